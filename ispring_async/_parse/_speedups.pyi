def records_json(
    run: bytes,
    item: bytes,
    fields: tuple[bytes, ...],
    absent: tuple[bytes, ...],
    max_depth: int,
    max_text: int,
    /,
) -> bytes | None: ...
