"""``fp8mac demo``: the main job, end to end."""

from __future__ import annotations


def register(sub):
    d = sub.add_parser("demo", help="the main job: model, simulate and report a real layer",
                       description="Run the end-to-end demo on the digits MLP's training GEMMs.")
    d.add_argument("--batch", type=int, default=1024,
                   help="training batch: K of the weight-gradient GEMMs (default 1024)")
    d.add_argument("--seed", type=int, default=0, help="training seed (default 0)")
    d.set_defaults(func=run)


def run(args) -> int:
    from fp8mac.model.config import MacConfig
    from fp8mac.model.demo import accumulation_report

    if args.batch < 1:
        raise ValueError(f"--batch must be at least 1, not {args.batch}")
    print("== fp8mac demo: golden model ==")
    accumulation_report(MacConfig(), batch=args.batch, seed=args.seed)
    return 0
