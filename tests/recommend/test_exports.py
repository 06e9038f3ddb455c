from __future__ import annotations

import recommend


def test_public_names_are_exported_and_exist() -> None:
    assert sorted(recommend.__all__) == recommend.__all__
    for name in recommend.__all__:
        assert getattr(recommend, name) is not None, name
    assert {"Recommender", "RecommendRequest", "Recommendation", "HistoryRow", "read_history",
            "train_and_save", "evaluate_history", "generate", "ModelError", "HistoryError"} <= set(recommend.__all__)
