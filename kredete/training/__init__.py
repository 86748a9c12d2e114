"""Training data produced from AI traces (`kredete training export`)."""
