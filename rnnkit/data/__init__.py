"""Data: tokenizers, vocabulary, text readers, language-model batching and the dataset registry."""
