"""The Python FAQ bot decides like the Rust one (bots/faq/src/faq.rs): the
same cases against the same example file. Run with
``.dev/botvenv/bin/python -m unittest discover -s examples/bots/python``."""

import os
import unittest

from faq_bot import ANSWER, HAND_OFF, MISS, Faq, FaqError

EXAMPLE = os.path.join(os.path.dirname(__file__), "..", "faq.toml")


class Decisions(unittest.TestCase):
    def test_the_example_file_answers_hands_off_and_misses(self):
        faq = Faq.load(EXAMPLE)
        decision, answer = faq.decide("How long does SHIPPING take?")
        self.assertEqual(decision, ANSWER)
        self.assertIn("2 working days", answer)
        decision, answer = faq.decide("what are your opening hours")
        self.assertEqual(decision, ANSWER)
        self.assertIn("Monday", answer)
        for text in ("Can I talk to a human?", "agent please", "A PERSON, now"):
            self.assertEqual(faq.decide(text), (HAND_OFF, None), text)
        self.assertEqual(faq.decide("the shipper was humane"), (MISS, None))
        self.assertEqual(faq.decide("hello there"), (MISS, None))
        self.assertIn("person", faq.fallback)

    def test_bad_files_are_refused_with_the_reason(self):
        with self.assertRaises(FaqError):
            Faq.parse('[[faq]]\nanswer = "x"')
        with self.assertRaisesRegex(FaqError, "entry 1"):
            Faq.parse('[[faq]]\nkeywords = [" "]\nanswer = "x"')
        with self.assertRaises(FaqError):
            Faq.parse("surprise = 1")
        self.assertEqual(Faq.parse("").decide("anything"), (MISS, None))


if __name__ == "__main__":
    unittest.main()
