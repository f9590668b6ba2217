"""The training recipe of a tile model and its command-line options (no JAX import: the CLI builds its
parser from this module before anything heavy is loaded)."""

from __future__ import annotations

import argparse

#: The recipe of the shipped m2_starfield encoder: the defaults of
#: :func:`~starmodels.tiles.build.build_tile_model`, of ``starmodels train-encoder`` and of
#: ``python -m benchmarks.m2_catalog`` (chosen on simulated fields).
RECIPE = {"steps": 2600, "batch": 8, "wake_steps": 400, "checkerboard": True, "learning_rate": 5e-3,
          "truncated_flux": False}


def add_recipe_arguments(parser) -> None:
    """Command-line options for the training recipe (defaults: :data:`RECIPE`) and the seed."""
    r = RECIPE
    parser.add_argument("--steps", type=int, default=r["steps"], help=f"sleep-phase steps ({r['steps']})")
    parser.add_argument("--batch", type=int, default=r["batch"], help=f"images per step ({r['batch']})")
    parser.add_argument("--wake-steps", type=int, default=r["wake_steps"],
                        help=f"fine-tuning steps after the wake fit, 0 for none ({r['wake_steps']})")
    parser.add_argument("--lr", type=float, default=r["learning_rate"],
                        help=f"peak learning rate of the sleep phase ({r['learning_rate']})")
    flag = argparse.BooleanOptionalAction
    parser.add_argument("--checkerboard", action=flag, default=r["checkerboard"],
                        help="two-colour conditional encoder")
    parser.add_argument("--truncated-flux", action=flag, default=r["truncated_flux"],
                        help="truncate the encoder's reference-band flux to the prior's support")
    parser.add_argument("--seed", type=int, default=0, help="seed of the weights and simulations")


def recipe_from_args(args) -> dict:
    """:func:`~starmodels.tiles.build.build_tile_model` keywords from the options of
    :func:`add_recipe_arguments`."""
    return {"steps": args.steps, "batch": args.batch, "wake_steps": args.wake_steps, "seed": args.seed,
            "learning_rate": args.lr, "checkerboard": args.checkerboard,
            "truncated_flux": args.truncated_flux}
