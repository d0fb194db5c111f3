"""A driver process for the executor tests: train some smoke nets of one store, print their accuracies as JSON.

    python tests/drive_collect.py STORE EXECUTOR NET_ID[,NET_ID...] [RAY_ADDRESS]
"""
import json
import sys

from replicate.config import get_scale
from replicate.executors import executor_for
from replicate.experiment_data import data_for
from replicate.pipeline import collect
from replicate.store import Store


def main(store_root: str, executor: str, nets: str, address: str | None = None) -> None:
    store, scale = Store(store_root), get_scale("smoke")
    data = {"rvl-cdip": data_for("rvl-cdip", scale, store, None, progress=False)}
    with executor_for(executor, workers=1, address=address) as workers:
        workers.check(store.root, [data["rvl-cdip"].root])
        accuracies = collect(store, scale, ["rvl-cdip"], data, "caffe", "cpu", workers, progress=False,
                             only=set(nets.split(",")))
    print(json.dumps(accuracies, sort_keys=True))


if __name__ == "__main__":
    main(*sys.argv[1:])
