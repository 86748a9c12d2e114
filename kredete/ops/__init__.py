"""Operations: the metrics collector, `kredete ops` (status, slow statements) and `kredete capacity`."""
