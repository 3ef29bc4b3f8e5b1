"""Texts of every length the encoding tests share: short and long passages, questions, one character."""

TEXTS = [
    "a short one",
    "a much longer passage about the history of the university, its founders and the buildings they raised",
    "mid-sized text on rivers",
    "x",
    "another long passage: the river rises in the mountains, flows north through three countries and the sea",
    "what year was it founded?",
    "the committee met twice a year in the old library",
]
