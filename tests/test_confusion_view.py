"""Results' 'where it goes wrong' view: the matrix for a few classes, the most confused pairs first for 100."""

from streamlit.testing.v1 import AppTest


def _view(n_classes: int) -> AppTest:
    def script(n: int) -> None:
        from pages.confusion import confusion_view

        names = [f"class {i:03d}" for i in range(n)]
        confusion = [[10 if i == j else 0 for j in range(n)] for i in range(n)]
        confusion[5][7], confusion[1][2], confusion[8][8] = 4, 2, 1  # two mix-ups, the larger from class 5
        confusion_view(names, confusion)

    return AppTest.from_function(script, args=(n_classes,), default_timeout=60).run()


def _charts(at: AppTest) -> list:
    return list(at.get("vega_lite_chart"))


def test_a_few_classes_get_the_whole_matrix():
    at = _view(10)
    assert not at.exception and len(_charts(at)) == 1 and not at.dataframe


def test_a_hundred_classes_lead_with_the_most_confused_pairs_and_draw_the_matrix_on_demand():
    at = _view(100)
    assert not at.exception and not _charts(at)
    pairs = at.dataframe[0].value
    assert pairs[["Real class", "Model said", "Photos"]].values.tolist() == [["class 005", "class 007", 4],
                                                                             ["class 001", "class 002", 2]]
    assert round(pairs["Share"].iloc[0]) == 29  # 4 of the 14 photos of class 005
    at.toggle(key="full_confusion").set_value(True).run()
    assert not at.exception and len(_charts(at)) == 1
