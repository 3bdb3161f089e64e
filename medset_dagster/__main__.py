"""`python -m medset_dagster <command>`: what the Makefile runs.

    build      observe the sources, then build the dataset (runs shown in the UI under the job)
    observe    observe the sources only
    publish    publish the current release (a dry run without MEDSET_HUB_REPO)
    recover    mark runs whose process is gone as failed and free their slots

Options: `--policy card|published` (build), `--no-observe` (build), `--changed` (build only what
is stale or missing, and its downstream, as the nightly rebuild does).

The console shows the runs' INFO events and above (progress, warnings, failures); set
MEDSET_LOG_LEVEL=DEBUG for every Dagster event. The UI shows every event whatever the level.
"""

from __future__ import annotations

import argparse
import os
import sys


def main(argv: list[str] | None = None) -> int:
    """Run one command of the module docstring with `argv` (default: `sys.argv[1:]`) and return the exit
    status: 0 done, 1 a run failed, 2 another build holds the data folder's lock (argparse also exits
    with 2 on bad arguments)."""
    parser = argparse.ArgumentParser(prog="python -m medset_dagster", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["build", "observe", "publish", "recover"])
    parser.add_argument("--policy", choices=["card", "published"], default=None, help="curation policy (build)")
    parser.add_argument("--no-observe", action="store_true", help="build without observing the sources first")
    parser.add_argument("--changed", action="store_true", help="build only stale or missing assets and their downstream")
    args = parser.parse_args(argv)

    from medset_dagster.definitions import defs
    from medset_dagster.defs.launcher import (
        BuildInProgress,
        build,
        changed_assets,
        exclusive_build,
        instance_from_home,
        recover_dead_runs,
        run_phase,
    )

    storage = defs.resources["storage"]
    # The console logger's level for the runs started here (Dagster's default is DEBUG: every event).
    loggers = {"loggers": {"console": {"config": {"log_level": os.environ.get("MEDSET_LOG_LEVEL", "INFO").upper()}}}}
    with instance_from_home() as instance:
        recover_dead_runs(instance)
        if args.command == "recover":
            return 0
        try:
            with exclusive_build(storage.root):
                if args.command in ("build", "observe") and not args.no_observe:
                    observed = run_phase(defs, instance, "observe_sources", None, run_config=loggers, with_origin=True)
                    print(f"observe_sources: {'succeeded' if observed.success else 'FAILED'} (run {observed.run_id})")
                    if not observed.success:
                        return 1
                if args.command == "build":
                    config = {**loggers, **({"ops": {"curated_dataset": {"config": {"policy": args.policy}}}} if args.policy else {})}
                    selection = changed_assets(defs, instance) if args.changed else None
                    results = build(defs, instance, run_config=config, selection=selection, with_origin=True)
                    if not all(result.success for result in results):
                        return 1
                    print(f"Release folder: {storage.release_dir}")
                if args.command == "publish":
                    published = run_phase(defs, instance, "publish_hub_release", None, run_config=loggers, with_origin=True)
                    print(f"publish_hub_release: {'succeeded' if published.success else 'FAILED'} (run {published.run_id})")
                    return 0 if published.success else 1
        except BuildInProgress as error:
            print(f"medset_dagster: {error}", file=sys.stderr)
            return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
