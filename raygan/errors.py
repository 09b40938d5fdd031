"""User-facing errors: one line, naming the file and what was expected."""


class UserError(Exception):
    """A mistake in the user's input. The CLI prints it as one line and exits 2."""

    def __init__(self, where: str, message: str):
        self.where = str(where)
        self.message = message
        super().__init__(f"{self.where}: {message}")
