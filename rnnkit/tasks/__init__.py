"""The tasks: one module each (lm, classify, seq2seq, forecast), engine-neutral."""
