"""The root of the product's own exceptions, so that one ``except`` can tell ours from the rest."""


class PipelineError(Exception):
    """An error this product raises on purpose; the message says what happened and what to do."""
