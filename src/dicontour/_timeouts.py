"""The engine's timeouts, in a module light enough for the CLI's parser to import.

:mod:`dicontour.engine` uses them (and re-exports them); ``dicontour --help``
shows them without importing the engine (asyncio, multiprocessing).
"""

#: Seconds the Dask engine waits for a scheduler to answer (``--connect-timeout``).
CONNECT_TIMEOUT = 10.0
#: Seconds a Dask run waits while no worker is connected before it gives up
#: (``--no-worker-timeout``).
NO_WORKER_TIMEOUT = 60.0
