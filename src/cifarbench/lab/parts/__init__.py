"""One module per lab part; each has ``run(ctx, options) -> PartResult``."""
