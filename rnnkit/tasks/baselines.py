"""Baselines a text classifier must beat, on the same split: the majority class, and TF-IDF + logistic
regression (scikit-learn, `pip install 'rnnkit[baselines]'`) on the same post tokens."""
from __future__ import annotations

import numpy as np

from ..data.posts import PostTokenizer
from .classify import report_for


def majority(train_y: np.ndarray, test_y: np.ndarray, labels: list) -> dict:
    """Always predict the most frequent training label."""
    most = int(np.bincount(train_y, minlength=len(labels)).argmax())
    return report_for(test_y, np.full(len(test_y), most), labels)


def tfidf_logistic(train_texts, train_y, test_texts, test_y, labels: list, C: float = 4.0) -> dict:
    """Word 1-2-grams of the post tokenizer, TF-IDF weighted (sublinear tf), multinomial logistic regression."""
    try:
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.linear_model import LogisticRegression
    except ImportError as e:
        raise ImportError("the TF-IDF baseline needs scikit-learn: pip install 'rnnkit[baselines]'") from e
    tokenizer = PostTokenizer()
    vectorizer = TfidfVectorizer(tokenizer=tokenizer.tokenize, lowercase=False, token_pattern=None,
                                 ngram_range=(1, 2), min_df=1, sublinear_tf=True)
    features = vectorizer.fit_transform(train_texts)
    model = LogisticRegression(C=C, max_iter=2000).fit(features, train_y)
    return report_for(test_y, model.predict(vectorizer.transform(test_texts)), labels)
