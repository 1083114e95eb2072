"""Selection and patient splits: Index.subset / folds / holdout, splits files, the split CLI."""

from __future__ import annotations

import json
import shutil
from collections import Counter
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import dicontour
from dicontour.cli import main
from dicontour.dicom import DicomHeader
from dicontour.index import Index, PatientCounts, SampleRecord, summarize
from dicontour.phantom import write_phantom
from dicontour.problems import CODES, EXCLUDES, problem
from dicontour.splits import assign_folds, choose_holdout

# ------------------------------------------------------------------ synthetic indexes


def record(pid: str, n: int, i: bool = True, o: bool = True) -> SampleRecord:
    header = DicomHeader(16, 16, (1.0, 1.0), n, None, 1.0, 0.0, "")
    folder = f"contourfiles/{pid}-c"
    return SampleRecord(
        pid,
        f"{pid}-c",
        n,
        f"dicoms/{pid}/{n}.dcm",
        f"{folder}/i-contours/IM-0001-{n:04d}-icontour-manual.txt" if i else None,
        f"{folder}/o-contours/IM-0001-{n:04d}-ocontour-manual.txt" if o else None,
        header,
    )


def make_index(layout: dict[str, list[tuple[bool, bool]]], problems=()) -> Index:
    """An index of ``layout``: patient -> the (has i, has o) of each of its slices."""
    records = [
        record(pid, 10 + n, i, o)
        for pid, slices in layout.items()
        for n, (i, o) in enumerate(slices)
    ]
    counts = {pid: PatientCounts(len(slices) + 5, 5) for pid, slices in layout.items()}
    return Index("/nowhere", records, problems, counts=counts)


contours = st.sampled_from([(True, False), (False, True), (True, True)])
layouts = st.dictionaries(
    st.from_regex(r"P[0-9]{1,3}(_x)?", fullmatch=True),  # "_" in ids must not confuse case ids
    st.lists(contours, min_size=1, max_size=9),
    min_size=2,
    max_size=12,
)


def sizes(index: Index) -> Counter:
    return Counter(r.patient_id for r in index)


# ------------------------------------------------------------------ folds: properties


@settings(max_examples=150, deadline=None)
@given(layout=layouts, k=st.integers(2, 12), seed=st.integers(0, 2**32 - 1))
@pytest.mark.slow
def test_folds_partition_patients_and_samples(layout, k, seed):
    index = make_index(layout)
    if k > len(layout):
        with pytest.raises(ValueError, match=f"cannot make {k} folds from {len(layout)} patients"):
            index.folds(k, seed=seed)
        return
    folds = index.folds(k, seed=seed)
    assert len(folds) == k
    every = sorted(r.case_id for r in index)
    val_of: Counter = Counter()
    for split in folds:
        train_p = {r.patient_id for r in split.train}
        val_p = {r.patient_id for r in split.val}
        assert val_p and not train_p & val_p
        assert sorted([r.case_id for r in split.train] + [r.case_id for r in split.val]) == every
        val_of.update(val_p)
        assert split.val.summary["labelled_slices"] == len(split.val)
        assert split.train.summary["labelled_slices"] == len(split.train)
    assert val_of == Counter(set(layout))  # each patient in exactly one val fold
    # greedy balance: the folds differ by at most the largest patient's samples
    val_sizes = [len(split.val) for split in folds]
    assert max(val_sizes) - min(val_sizes) <= max(len(s) for s in layout.values())
    # deterministic from the seed, and independent of the patients' order in the index
    again = make_index(dict(reversed(list(layout.items())))).folds(k, seed=seed)
    assert [sorted(s.val.patients) for s in again] == [sorted(s.val.patients) for s in folds]
    assert [s.to_dict() for s in index.folds(k, seed=seed)] == [s.to_dict() for s in folds]


def test_different_seeds_give_different_folds():
    index = make_index({f"P{n}": [(True, True)] * 3 for n in range(8)})
    seen = {
        tuple(tuple(sorted(s.val.patients)) for s in index.folds(4, seed=seed))
        for seed in range(20)
    }
    assert len(seen) >= 10


def test_folds_balance_by_samples_not_patients():
    # one big patient and six small ones: the big one's fold gets no other patient
    index = make_index(
        {"BIG": [(True, True)] * 30, **{f"S{n}": [(True, True)] * 5 for n in range(6)}}
    )
    for seed in range(10):
        folds = index.folds(2, seed=seed)
        big = next(s for s in folds if "BIG" in s.val.patients)
        small = next(s for s in folds if "BIG" not in s.val.patients)
        assert len(small.val) == 30 and len(big.val) == 30


@pytest.mark.parametrize("k", [0, 1, -3, 2.0, True, "2"])
def test_folds_refuse_k_below_2_or_not_an_int(k):
    with pytest.raises(ValueError, match="k must be an integer of at least 2"):
        make_index({"A": [(True, True)], "B": [(True, True)]}).folds(k)


def test_patients_without_samples_are_not_folded():
    index = make_index({"A": [(True, True)], "B": [(True, False)]})
    index = Index(
        index.location,
        list(index),
        [],
        counts={**index.counts, "EMPTY": PatientCounts(3, 3)},
    )
    assert index.patients == ("A", "B", "EMPTY")
    with pytest.raises(ValueError, match="3 folds from 2 patients with samples"):
        index.folds(3)
    folds = index.folds(2)
    assert sorted(p for s in folds for p in s.val.patients) == ["A", "B"]
    assert all("EMPTY" in s.train.patients for s in folds)


@settings(max_examples=100, deadline=None)
@given(
    sizes_=st.dictionaries(
        st.text("ABCDEFGH", min_size=1, max_size=3), st.integers(1, 50), min_size=2, max_size=15
    ),
    seed=st.integers(0, 1000),
    data=st.data(),
)
@pytest.mark.slow
def test_no_single_move_or_swap_narrows_the_widest_gap(sizes_, seed, data):
    k = data.draw(st.integers(2, len(sizes_)))
    folds = assign_folds(sizes_, k, seed=seed)
    totals = [sum(sizes_[p] for p in fold) for fold in folds]
    heavy, light = totals.index(max(totals)), totals.index(min(totals))
    gap = totals[heavy] - totals[light]
    changes = [sizes_[p] for p in folds[heavy]] if len(folds[heavy]) > 1 else []
    changes += [sizes_[p] - sizes_[q] for p in folds[heavy] for q in folds[light]]
    assert not [d for d in changes if 0 < d < gap]


def test_the_first_step_is_the_seeded_shuffle():
    # equal sizes: step 2 alone decides, and the folds follow default_rng(seed)'s order
    import numpy as np

    ids = sorted(f"P{n}" for n in range(6))
    order = [ids[k] for k in np.random.default_rng(5).permutation(6)]
    assert assign_folds(dict.fromkeys(ids, 4), 3, seed=5) == [order[0::3], order[1::3], order[2::3]]


# ------------------------------------------------------------------ hold-out


@settings(max_examples=100, deadline=None)
@given(layout=layouts, fraction=st.floats(0.01, 0.99), seed=st.integers(0, 1000))
@pytest.mark.slow
def test_holdout_splits_by_patient(layout, fraction, seed):
    split = make_index(layout).holdout(fraction, seed=seed)
    train_p, val_p = set(split.train.patients), set(split.val.patients)
    assert train_p and val_p and not train_p & val_p and train_p | val_p == set(layout)
    assert len(split.train) + len(split.val) == sum(len(s) for s in layout.values())
    again = make_index(layout).holdout(fraction, seed=seed)
    assert again.to_dict() == split.to_dict()


def test_holdout_takes_about_the_fraction():
    index = make_index({f"P{n}": [(True, False)] * 4 for n in range(10)})  # 40 samples
    for seed in range(5):
        assert len(index.holdout(0.3, seed=seed).val) == 12


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan"), "0.2"])
def test_holdout_refuses_a_fraction_outside_0_1(fraction):
    with pytest.raises(ValueError, match="fraction must be a number between 0 and 1"):
        make_index({"A": [(True, True)], "B": [(True, True)]}).holdout(fraction)


def test_holdout_needs_two_patients():
    with pytest.raises(ValueError, match="at least 2 patients"):
        choose_holdout({"A": 4}, 0.5)


# ------------------------------------------------------------------ subset


@settings(max_examples=100, deadline=None)
@given(layout=layouts, data=st.data())
@pytest.mark.slow
def test_subset_summary_is_a_fresh_computation(layout, data):
    index = make_index(layout, problems=[problem("stray-file", "x", "m")])  # dataset-level
    chosen = data.draw(st.sets(st.sampled_from(sorted(layout))))
    sub = index.subset(patients=chosen)
    assert set(sub.patients) == chosen
    assert [r for r in sub] == [r for r in index if r.patient_id in chosen]
    # expected counts computed here, not by summarize
    kept = [r for r in index if r.patient_id in chosen]
    assert sub.summary["patients"] == len(chosen)
    assert sub.summary["dicoms"] == sum(len(layout[p]) + 5 for p in chosen)
    assert sub.summary["unlabelled_slices"] == 5 * len(chosen)
    assert sub.summary["i_contours"] == sum(r.i_contour is not None for r in kept)
    assert sub.summary["o_contours"] == sum(r.o_contour is not None for r in kept)
    assert set(sub.summary["per_patient"]) == chosen
    assert sub.summary["problems"] == {"stray-file": 1}
    # cases: the same records, the patients those cases belong to
    cases = [r.case_id for r in kept]
    by_cases = index.subset(cases=cases)
    assert by_cases.summary == summarize(list(by_cases), by_cases.problems, by_cases.counts)
    assert [r.case_id for r in by_cases] == cases
    assert set(by_cases.patients) == {r.patient_id for r in kept}


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("phantom") / "data"
    write_phantom(root, patients=4, slices=10, shape=(32, 32), faults=True)
    return root


def copy_with_only(root: Path, dest: Path, patients: set[str]) -> Path:
    """A copy of ``root`` whose link.csv and folders hold only ``patients``."""
    shutil.copytree(root, dest)
    lines = (dest / "link.csv").read_text().splitlines()
    kept = [lines[0]]
    for line in lines[1:]:
        pid, oid = line.split(",")
        if pid in patients:
            kept.append(line)
        else:
            shutil.rmtree(dest / "dicoms" / pid, ignore_errors=True)
            shutil.rmtree(dest / "contourfiles" / oid, ignore_errors=True)
    (dest / "link.csv").write_text("\n".join(kept) + "\n")
    return dest


@pytest.mark.parametrize(
    "patients",
    [{"PHA00001"}, {"PHA00002", "PHA00004"}, {"PHA00001", "PHA00003", "PHA00004"}, set()],
    ids=lambda p: "+".join(sorted(p)) or "none",
)
@pytest.mark.slow
def test_subset_equals_scanning_a_copy_with_only_those_patients(phantom, tmp_path, patients):
    index = dicontour.scan(phantom)
    assert index.errors()  # the phantom's faults: problems of kept and dropped patients
    sub = index.subset(patients=patients)
    fresh = dicontour.scan(copy_with_only(phantom, tmp_path / "copy", patients))
    assert sub.summary == fresh.summary
    assert [r.to_dict() for r in sub] == [r.to_dict() for r in fresh]
    assert sub.problems == fresh.problems


def test_subset_refuses_unknown_patients_and_cases_naming_them():
    index = make_index({"A": [(True, True)] * 2, "B": [(True, False)]})
    with pytest.raises(ValueError, match="1 patient\\(s\\) not in the index: Z"):
        index.subset(patients=["A", "Z"])
    with pytest.raises(ValueError, match="2 case\\(s\\) not in the index: A_0099, Q_0001"):
        index.subset(cases=["A_0010", "A_0099", "Q_0001"])
    assert index.subset(patients="A").patients == ("A",)  # one id, not its letters


def test_subset_of_both_patients_and_cases_is_their_intersection():
    index = make_index({"A": [(True, True)] * 2, "B": [(True, False)]})
    sub = index.subset(patients=["A"], cases=["A_0010", "B_0010"])
    assert [r.case_id for r in sub] == ["A_0010"] and sub.patients == ("A",)


def test_case_id():
    assert record("SCD0000101", 48).case_id == "SCD0000101_0048"
    assert record("P", 12345).case_id == "P_12345"


# ------------------------------------------------------------------ exclusions


def flagged_index() -> Index:
    """Patient A misaligned; B with one slice of each slice-level code; C clean."""
    a = [record("A", n) for n in (1, 2, 3)]
    b = [record("B", n) for n in (1, 2, 3, 4, 5)]
    c = [record("C", n, o=False) for n in (1, 2)]
    found = [
        problem("contours-misaligned", "contourfiles/A-c", "misaligned", patient_id="A"),
        problem("i-outside-o", b[0].i_contour, "30% outside", patient_id="B", slice=1),
        problem("implausible-area", b[1].o_contour, "area", patient_id="B", slice=2),
        problem("implausible-area", b[2].i_contour, "area", patient_id="B", slice=3),
        problem("shape-mismatch", b[3].dicom, "shape", patient_id="B", slice=4),
        problem("instance-number-mismatch", b[4].dicom, "n", patient_id="B", slice=5),
        problem("stray-file", "notes.txt", "stray"),
    ]
    return Index("/nowhere", a + b + c, found)


def contours_of(index: Index) -> dict[str, tuple[bool, bool]]:
    return {r.case_id: (r.i_contour is not None, r.o_contour is not None) for r in index}


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        (
            "contours-misaligned",
            {"A_0001": (True, False), "A_0002": (True, False), "A_0003": (True, False)},
        ),
        ("i-outside-o", {"B_0001": None}),
        ("implausible-area", {"B_0002": (True, False), "B_0003": (False, True)}),
        ("shape-mismatch", {"B_0004": None}),
        ("instance-number-mismatch", {"B_0005": None}),
    ],
)
def test_each_code_removes_what_the_table_says(code, expected):
    index = flagged_index()
    before = contours_of(index)
    after = contours_of(index.subset(exclude=[code]))
    for case, kept in before.items():
        want = expected.get(case, kept)
        if want is None:
            assert case not in after, f"{case} should have left the index"
        else:
            assert after[case] == want, case
    dropped = {(e.case_id, e.contour) for e in index.subset(exclude=[code]).excluded}
    want_dropped = {
        (case, kind)
        for case, kept in expected.items()
        for kind, had, has in zip("io", before[case], kept or (False, False), strict=True)
        if had and not has
    }
    assert dropped == want_dropped
    assert all(e.code == code for e in index.subset(exclude=[code]).excluded)


def test_the_table_covers_exactly_the_codes_that_can_disqualify_a_scanned_contour():
    assert set(EXCLUDES) <= set(CODES)
    assert all(CODES[code][0] == "warning" for code in EXCLUDES)


@pytest.mark.parametrize("code", ["bogus", "missing-dicom", "stray-file", "duplicate-contour"])
def test_unexcludable_codes_raise_listing_the_valid_ones(code):
    with pytest.raises(ValueError, match="excludable codes: contours-misaligned, i-outside-o"):
        flagged_index().subset(exclude=[code])


def test_exclude_takes_one_code_as_a_string():
    assert len(flagged_index().subset(exclude="contours-misaligned").excluded) == 3


def test_exclusions_accumulate_and_follow_the_kept_patients():
    index = flagged_index().subset(exclude=["contours-misaligned"])
    twice = index.subset(exclude=["i-outside-o"])
    assert Counter(e.code for e in twice.excluded) == {"contours-misaligned": 3, "i-outside-o": 2}
    assert {e.case_id[0] for e in twice.subset(patients=["B", "C"]).excluded} == {"B"}
    assert twice.subset(patients=["C"]).excluded == ()
    # excluding again removes nothing new
    assert twice.subset(exclude=["contours-misaligned"]).excluded == twice.excluded
    assert flagged_index().subset(exclude=["contours-misaligned"]).summary["o_contours"] == 5


def test_folds_after_exclusion_keep_the_exclusions():
    index = flagged_index().subset(exclude=["i-outside-o"])
    for split in index.folds(3):
        both = split.train.excluded + split.val.excluded
        assert [e.case_id for e in both] == ["B_0001", "B_0001"]


# ------------------------------------------------------------------ splits files


def test_splits_file_round_trip_feeds_subset(tmp_path):
    index = make_index({f"P{n}": [(True, n % 2 == 0)] * (n + 1) for n in range(6)})
    folds = index.folds(3, seed=7)
    path = tmp_path / "splits_final.json"
    written = dicontour.write_splits(path, folds)
    assert written == [s.to_dict() for s in folds]
    assert dicontour.read_splits(path) == written
    assert json.loads(path.read_text()) == written  # plain nnU-Net JSON
    for split, fold in zip(folds, dicontour.read_splits(path), strict=True):
        train = index.subset(cases=fold["train"])
        assert [r.case_id for r in train] == [r.case_id for r in split.train]
        assert train.summary == split.train.summary
    assert [p.name for p in tmp_path.iterdir()] == ["splits_final.json"]  # no temporary left


def test_write_splits_refuses_bad_splits_and_keeps_the_old_file(tmp_path):
    path = tmp_path / "splits_final.json"
    dicontour.write_splits(path, [{"train": ["a"], "val": ["b"]}])
    with pytest.raises(dicontour.SplitsError, match="fold 0 has 1 case\\(s\\) on both sides"):
        dicontour.write_splits(path, [{"train": ["a"], "val": ["a"]}])
    assert dicontour.read_splits(path) == [{"train": ["a"], "val": ["b"]}]
    assert len(list(tmp_path.iterdir())) == 1


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("not json", "not a JSON file"),
        ('{"train": []}', "expected a JSON list of folds"),
        ('[{"train": []}]', "fold 0 must have exactly 'train' and 'val'"),
        ('[{"train": [1], "val": []}]', "fold 0 'train' must be a list of case id strings"),
        (b"\xff\xfe", "not a JSON file"),
    ],
)
def test_read_splits_names_the_file_and_the_reason(tmp_path, text, message):
    path = tmp_path / "bad.json"
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    with pytest.raises(dicontour.SplitsError, match=message) as error:
        dicontour.read_splits(path)
    assert str(path) in str(error.value)
    assert isinstance(error.value, dicontour.DicontourError)


# ------------------------------------------------------------------ real data


@pytest.mark.slow
def test_real_exclude_contours_misaligned(real_data):
    index = dicontour.scan(real_data)
    clean = index.subset(exclude=["contours-misaligned"])
    assert index.summary["o_contours"] == 46 and clean.summary["o_contours"] == 37
    assert clean.summary["i_contours"] == 96 and len(clean) == 96
    mine = clean.summary["per_patient"]["SCD0000501"]
    assert (mine["i_contours"], mine["o_contours"]) == (22, 0)
    assert len(clean.excluded) == 9
    assert {(e.case_id[:10], e.contour, e.code) for e in clean.excluded} == {
        ("SCD0000501", "o", "contours-misaligned")
    }
    others = {p: s for p, s in index.summary["per_patient"].items() if p != "SCD0000501"}
    assert {p: clean.summary["per_patient"][p] for p in others} == others


@pytest.mark.slow
def test_real_exclude_i_outside_o_drops_those_slices(real_data):
    clean = dicontour.scan(real_data).subset(exclude=["i-outside-o"])
    assert (len(clean), clean.summary["i_contours"], clean.summary["o_contours"]) == (87, 87, 37)
    assert len(clean.excluded) == 18


def test_real_folds(real_data):
    index = dicontour.scan(real_data)
    assert index.patients == tuple(f"SCD0000{n}01" for n in range(1, 6))
    folds = index.folds(5, seed=0)
    assert sorted(s.val.patients[0] for s in folds) == list(index.patients)
    assert sorted(len(s.val) for s in folds) == [18, 18, 18, 20, 22]
    assert all(len(s.train) + len(s.val) == 96 for s in folds)
    with pytest.raises(ValueError, match="cannot make 6 folds from 5 patients"):
        index.folds(6)


# ------------------------------------------------------------------ CLI


def test_cli_split_json_and_out(phantom, tmp_path, capsys):
    out = tmp_path / "splits_final.json"
    code = main(["split", str(phantom), "--folds", "3", "--seed", "2", "--out", str(out), "--json"])
    assert code == 0
    document = json.loads(capsys.readouterr().out)
    assert dicontour.read_splits(out) == document["splits"]
    assert len(document["splits"]) == 3
    index = dicontour.scan(phantom)
    assert document["splits"] == [s.to_dict() for s in index.folds(3, seed=2)]
    for side in document["sides"]:
        assert side["train"]["samples"] + side["val"]["samples"] == len(index)
        assert not set(side["train"]["patients"]) & set(side["val"]["patients"])


def test_cli_split_human_report_without_out_writes_nothing(phantom, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["split", str(phantom), "--folds", "2"]) == 0
    out = capsys.readouterr().out
    assert "2 folds by patient, seed 0" in out and "no file written" in out
    assert list(tmp_path.iterdir()) == []


@pytest.mark.slow
def test_cli_split_real_exclusions(real_data, capsys):
    argv = ["split", str(real_data), "--folds", "5", "--exclude", "contours-misaligned"]
    assert main([*argv, "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["excluded"]) == 9 and document["exclude"] == ["contours-misaligned"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "excluded (contours-misaligned): 9 contour(s)" in out
    assert "SCD0000501_0059  o  contours-misaligned" in out


def test_cli_split_holdout(phantom, capsys):
    assert main(["split", str(phantom), "--holdout", "0.25", "--json"]) == 0
    document = json.loads(capsys.readouterr().out)
    assert len(document["splits"]) == 1 and document["splits"][0]["val"]


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--folds", "3", "--exclude", "bogus"],
            "invalid choice: 'bogus' (choose from 'contours-misaligned'",
        ),
        (["--folds", "3", "--exclude", "missing-dicom"], "invalid choice: 'missing-dicom'"),
        (["--folds", "1"], "must be at least 2"),
        (["--folds", "x"], "not an integer"),
        (["--holdout", "1.5"], "between 0 and 1"),
        ([], "one of the arguments --folds --holdout is required"),
        (["--folds", "2", "--holdout", "0.2"], "not allowed with argument"),
    ],
)
def test_cli_split_usage_errors_exit_2(phantom, capsys, argv, message):
    with pytest.raises(SystemExit) as exit_:
        main(["split", str(phantom), *argv])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_split_more_folds_than_patients_exits_2(phantom, capsys):
    assert main(["split", str(phantom), "--folds", "9"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("dicontour: error: cannot make 9 folds from 4 patients")


def test_cli_split_unusable_root_exits_2(tmp_path, capsys):
    assert main(["split", str(tmp_path / "nothing"), "--folds", "2"]) == 2
    assert "dataset root does not exist" in capsys.readouterr().err


def test_check_problems_keep_the_patients_and_counts(phantom):
    from dicontour.qa import check_index, with_problems

    index = dicontour.scan(phantom)
    checked = with_problems(index, check_index(index))
    assert checked.patients == index.patients and checked.counts == index.counts
    sub = checked.subset(patients=[index.patients[0]])
    assert sub.summary["dicoms"] == index.summary["per_patient"][index.patients[0]]["dicoms"]
