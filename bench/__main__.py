try:
    from bench.cli import main
except KeyboardInterrupt:  # Ctrl-C during the first imports: one line, no traceback
    import sys

    sys.stderr.write("mixerbench: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
