"""The checks that decide which questions written by the base model are kept (``asking.keep``).
What the base model writes is exercised by the real-model benchmark; these pin the filter."""

from engram_training.asking import keep

NOTE = ("Loan Schedule: The insurance value of the Harrow Loan Agreement is £420,000, "
        "agreed by the registrar on 3 March.")


def test_a_question_the_note_answers_is_kept_with_the_answer_word_as_written():
    w = keep(NOTE, "What is the Harrow loan insured for?", "It is insured for £420,000.")
    assert w is not None and w.question == "What is the Harrow loan insured for?"
    assert w.answer == "£420,000"


def test_remarks_and_off_topic_questions_are_dropped():
    assert keep(NOTE, "What a wonderful question!", "£420,000") is None  # not a question
    assert keep(NOTE, "What is the weather like today?", "£420,000") is None  # shares no word with the note
    assert keep(NOTE, "Harrow loan value?", "£420,000") is None  # too short, no question word
    assert keep(NOTE, "What is the value? And who agreed it?", "£420,000") is None  # two questions


def test_an_answer_that_only_repeats_the_question_does_not_keep_it():
    # The base model, note in its prompt, echoed the question: the note did not answer it.
    assert keep(NOTE, "Who agreed the Harrow loan agreement?", "The Harrow loan agreement was agreed.") is None
    assert keep(NOTE, "Who agreed the Harrow loan agreement?", "I am not sure.") is None
    assert keep(NOTE, "Who agreed the Harrow loan agreement?", "The registrar agreed it.").answer == "registrar"
