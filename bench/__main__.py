"""Every benchmark in one run: `python -m bench` (or `make bench`)."""

import importlib

for name in ("bench_embed", "bench_backbones", "bench_train", "bench_instant", "bench_head", "bench_refit",
             "bench_finetune", "bench_loader", "bench_download", "bench_suspects", "bench_hostile", "bench_live",
             "bench_upload_memory", "crash_consistency", "bench_exports"):
    print(f"\n=== {name} ===", flush=True)
    try:
        module = importlib.import_module(f"bench.{name}")
    except ModuleNotFoundError as exc:
        print(f"skipped: {exc}")
        continue
    module.main()
