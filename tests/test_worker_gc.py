"""The worker's garbage collector, once it has started."""

import gc

from restaurant_app.worker import GC_YOUNGEST_THRESHOLD, settle_garbage_collector


def test_a_started_worker_leaves_its_start_up_objects_alone_and_collects_less_often():
    threshold = gc.get_threshold()
    try:
        settle_garbage_collector()
        assert gc.get_freeze_count() > 0
        assert gc.get_threshold() == (GC_YOUNGEST_THRESHOLD, *threshold[1:])
        collections = gc.get_stats()[0]["collections"]
        made = [[] for _ in range(5000)]  # several times the default threshold, far less than ours
        assert gc.get_stats()[0]["collections"] == collections, f"collected among {len(made)} new objects"
    finally:
        gc.unfreeze()
        gc.set_threshold(*threshold)
