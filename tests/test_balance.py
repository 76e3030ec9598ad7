"""core.store.balance: the class-size problems the Review page words (its texts: tests/test_review_page.py)."""

from core.store.balance import BalanceProblem, balance_problems
from core.store.records import ClassInfo


def info(name: str, kept: int, rejected: int = 0) -> ClassInfo:
    return ClassInfo(name=name, kept=kept, rejected=rejected, train=kept, val=0)


def test_balanced_classes_have_no_problems():
    assert balance_problems([info("cats", 30), info("dogs", 20)], min_photos=10) == []


def test_problems_most_serious_first():
    classes = [info("cats", 40), info("dogs", 6), info("birds", 0), info("fish", 0, rejected=1)]
    assert balance_problems(classes, min_photos=10) == [
        BalanceProblem("thin", "dogs", 6),
        BalanceProblem("empty", "birds", 0, rejected=False),
        BalanceProblem("empty", "fish", 0, rejected=True),
        BalanceProblem("unbalanced", "cats", 40, other="dogs", other_count=6),
    ]


def test_one_class_is_too_few_and_imbalance_needs_two_filled_classes():
    assert balance_problems([info("cats", 30)], min_photos=10) == [BalanceProblem("too_few_classes", count=1)]
    assert balance_problems([info("cats", 30), info("dogs", 0)], min_photos=10) == [BalanceProblem("empty", "dogs")]


def test_imbalance_is_more_than_the_ratio():
    assert balance_problems([info("cats", 30), info("dogs", 10)], min_photos=10, max_imbalance=3) == []
    assert balance_problems([info("cats", 31), info("dogs", 10)], min_photos=10, max_imbalance=3) == [
        BalanceProblem("unbalanced", "cats", 31, other="dogs", other_count=10)]
