"""Targets: class names (with ImageNet's labels), topK, lists and contrasts, and the errors, each one line."""

from __future__ import annotations

import difflib
from pathlib import Path

import numpy as np
import pytest

import blackbox_xai
from blackbox_xai.errors import TargetError
from blackbox_xai.targets import parse_target, resolve_target

LABELS = (Path(blackbox_xai.__file__).parent / "data" / "imagenet_classes.txt").read_text().splitlines()


@pytest.fixture
def scores(rng: np.random.Generator) -> np.ndarray:
    return rng.normal(size=len(LABELS)).astype(np.float32)


def test_every_imagenet_name_resolves_to_its_line(scores: np.ndarray) -> None:
    folded = [label.casefold() for label in LABELS]
    assert len(LABELS) == 1000 and len(set(folded)) == 999  # only "Cardigan" (264) and "cardigan" (474)
    for index, label in enumerate(LABELS):
        if folded.count(label.casefold()) > 1:
            continue
        spelled = f"  {label.upper()} \t"  # case and surrounding whitespace do not matter
        resolved = resolve_target(spelled, scores, LABELS)
        assert (resolved.kind, resolved.classes) == ("class", (index,)), label
        assert resolved.score(scores[None])[0] == pytest.approx(scores[index])


def test_names_differing_only_in_case_need_the_exact_spelling(scores: np.ndarray) -> None:
    assert LABELS[264] == "Cardigan" and LABELS[474] == "cardigan"
    assert resolve_target("Cardigan", scores, LABELS).classes == (264,)
    assert resolve_target(" cardigan ", scores, LABELS).classes == (474,)
    with pytest.raises(TargetError, match="'CARDIGAN' is ambiguous: classes 264, 474 all have it"):
        resolve_target("CARDIGAN", scores, LABELS)


def test_known_imagenet_classes_and_inner_whitespace(scores: np.ndarray) -> None:
    assert resolve_target("Egyptian cat", scores, LABELS).classes == (285,)
    assert resolve_target("egyptian   CAT", scores, LABELS).classes == (285,)
    assert resolve_target("tabby", scores, LABELS).classes == (281,)
    assert resolve_target("crane (bird)", scores, LABELS).classes == (134,)
    assert parse_target("Egyptian cat", LABELS) == 285
    assert parse_target("Egyptian cat") == "Egyptian cat"  # without labels the name waits for resolve_target


def test_names_in_lists_and_contrasts(scores: np.ndarray) -> None:
    listed = resolve_target("tabby, 5 ,Persian cat", scores, LABELS)
    assert listed.kind == "classes" and listed.classes == (281, 5, 283)
    assert listed.score(scores[None])[0] == pytest.approx(scores[281] + scores[5] + scores[283], rel=1e-6)
    contrast = resolve_target("Egyptian cat:tabby", scores, LABELS)
    assert contrast.kind == "contrast" and contrast.classes == (285, 281)
    assert contrast.score(scores[None])[0] == pytest.approx(scores[285] - scores[281], rel=1e-6)
    assert resolve_target(["tiger cat", 7], scores, LABELS).classes == (282, 7)
    assert resolve_target(("tabby", "7"), scores, LABELS).classes == (281, 7)
    assert parse_target("tabby:3") == ("tabby", 3) and parse_target("a, b") == ["a", "b"]
    assert parse_target("tabby:3", LABELS) == (281, 3)


def test_unknown_name_suggests_the_three_nearest(scores: np.ndarray) -> None:
    with pytest.raises(TargetError) as caught:
        resolve_target("egyptain cat", scores, LABELS)
    message = str(caught.value)
    assert "\n" not in message and "unknown class name 'egyptain cat'" in message
    expected = difflib.get_close_matches("egyptain cat", [label.casefold() for label in LABELS], n=3)
    assert expected and expected[0] == "egyptian cat"
    for key in expected:
        index = [label.casefold() for label in LABELS].index(key)
        assert f"'{LABELS[index]}' ({index})" in message
    assert message.count("(") == len(expected)  # at most three suggestions
    with pytest.raises(TargetError, match="no label of the model's 1000 is close"):
        resolve_target("qqxqzzv", scores, LABELS)
    with pytest.raises(TargetError, match="unknown class name 'tabbby'"):  # inside a list too
        resolve_target("3,tabbby", scores, LABELS)


def test_a_numeric_name_loses_to_the_index() -> None:
    labels = ["7", "cat", "dog", "bird", "fish", "cow", "hen", "owl"]
    scores = np.arange(8, dtype=np.float32)
    assert resolve_target("7", scores, labels).classes == (7,)  # the index, not label "7" (class 0)
    assert resolve_target("cat", scores, labels).classes == (1,)


def test_duplicate_names_are_ambiguous_and_whole_labels_may_hold_commas() -> None:
    labels = ["crane", "dog", "crane", "a, b", "c:d"]
    scores = np.zeros(5, np.float32)
    with pytest.raises(TargetError, match="'Crane' is ambiguous: classes 0, 2"):
        resolve_target("Crane", scores, labels)
    # a label with a comma or colon is found when it is the whole target...
    assert resolve_target("A, B", scores, labels).classes == (3,)
    assert resolve_target("c:d", scores, labels).classes == (4,)
    # ...but commas and colons separate classes inside lists and contrasts: such a class is given by its index
    with pytest.raises(TargetError, match="unknown class name 'a'"):
        resolve_target("a, b,dog", scores, labels)
    assert resolve_target("3,dog", scores, labels).classes == (3, 1)


def test_names_without_labels_are_refused_in_one_line(scores: np.ndarray) -> None:
    for target in ("cat", "cat,3", ["cat"], ("cat", 3)):
        with pytest.raises(TargetError, match="cannot read target 'cat': class names need the model's labels"):
            resolve_target(target, scores)


@pytest.mark.parametrize("k", [1, 2, 5, 17, 1000])
def test_top_k_is_the_k_best_classes_summed(scores: np.ndarray, k: int) -> None:
    resolved = resolve_target(f"top{k}", scores)
    expected = np.argsort(scores)[::-1][:k]
    assert resolved.classes == tuple(int(i) for i in expected)
    assert resolved.kind == ("class" if k == 1 else "classes")
    assert resolved.score(scores[None])[0] == pytest.approx(np.sort(scores)[::-1][:k].sum(), rel=1e-5, abs=1e-5)
    assert resolved.to_json() == (int(expected[0]) if k == 1 else [int(i) for i in expected])


def test_top_k_ties_take_the_lower_index_like_top1() -> None:
    scores = np.array([1.0, 3.0, 3.0, 2.0, 3.0], np.float32)
    assert resolve_target("top1", scores).classes == (int(np.argmax(scores)),) == (1,)
    assert resolve_target("TOP2", scores).classes == (1, 2)
    assert resolve_target(" top4 ", scores).classes == (1, 2, 4, 3)
    assert parse_target("Top5") == "top5"


@pytest.mark.parametrize("target, message", [
    ("top0", "topK needs K >= 1"),
    ("top-3", "topK needs K >= 1"),
    ("top1001", "top1001 asks for more classes than the model has \\(1000\\): use top1 to top1000"),
    ("top5,3", "topK cannot be part of a list or a contrast"),
    ("3:top2", "topK cannot be part of a list or a contrast"),
    ("1:2:3", "a contrast is P:Q with exactly one ':'"),
    ("1:", "an empty class"),
    (",", "the list of classes is empty"),
    ("   ", "it is empty"),
    ("5000", "target class 5000 is out of range"),
    ("-1", "target class -1 is out of range"),
    ("3:3", "two different classes"),
    ([], "an empty list"),
    ([1.5], "an integer index or a class name"),
    (2.0, "unsupported target"),
])
def test_target_errors_are_one_line(scores: np.ndarray, target: object, message: str) -> None:
    with pytest.raises(TargetError, match=message) as caught:
        resolve_target(target, scores, LABELS)
    assert "\n" not in str(caught.value)


def test_parse_target_keeps_todays_forms() -> None:
    assert parse_target("top1") == "top1" and parse_target(" TOP1 ") == "top1"
    assert parse_target("7") == 7 and parse_target(" 7 ") == 7
    assert parse_target("1,2") == [1, 2] and parse_target("3,,5") == [3, 5]
    assert parse_target("1:2") == (1, 2)
    scores = np.array([0.1, 0.9, 0.3], np.float32)
    assert resolve_target(2, scores).classes == (2,)
    assert resolve_target(np.int64(2), scores).classes == (2,)
    assert resolve_target([2, 0, 2], scores).classes == (2, 0)
    assert resolve_target((0, 2), scores).classes == (0, 2)
    assert resolve_target("top1", scores).classes == (1,)
