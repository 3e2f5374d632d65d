"""Question-answer data: every fact asked for by questions made from its sentence, one-fact answers, the round trip,
the data report, and the user's own question file (kinject.augment.qa, questions, report, user_questions)."""

from __future__ import annotations

import json
import re
from typing import Any

import pytest

from kinject.augment import Passage, QuestionFileError, data_report, read_question_file
from kinject.augment.english import active, fronted, reworded
from kinject.augment.facts import Span, asked_spans
from kinject.augment.naming import between, described_names, in_full, model_codes, short_names
from kinject.augment.qa import fact_aliases, generate_questions, page_facts, round_trip
from kinject.augment.questions import fact_questions, fact_sentence
from kinject.augment.relations import makers
from kinject.runtime.progress import Progress
from kinject.settings.stages import AugmentConfig

PAGE = (
    "Calvane Transit today opened the Lumora line, an electric ferry service to the island of Varnholm. The crossing "
    "takes 35 minutes. The larger boat, the Lumora Grand, carries 410 passengers and 60 cars; the smaller Lumora "
    "Swift carries 180 passengers. Tickets cost 6.50 euros for adults. The first departure leaves at 5:40 every "
    'morning. "We expect to save 4,800 tonnes of diesel a year," said Marit Ekholm, the chief executive of '
    "Calvane Transit."
)
PASSAGE = Passage("d1p1", "ferry.md", "Lumora", PAGE)
TEXT = (  # the page of the ``tiny_run`` fixture
    "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs. Each p5.48xlarge instance has 8 GPUs "
    "and 2 TB of system memory. P5 instances deliver 3,200 Gbps of aggregate network bandwidth."
)


class _Silent:
    """A generator that writes nothing: only the questions made by rule remain."""

    name = "silent"

    def chat(self, conversations, max_new_tokens, temperature, seed=0):
        return ["" for _ in conversations]


class _Reader:
    """A reader that answers from a script keyed on the question's last words ("" when it has no line)."""

    name = "reader"

    def __init__(self, answers: dict[str, str]):
        self.answers = answers

    def chat(self, conversations, max_new_tokens, temperature, seed=0):
        out = []
        for conversation in conversations:
            asked = conversation[-1]["content"]
            out.append(next((a for key, a in self.answers.items() if key in asked), ""))
        return out


def _span(sentence: str, text: str):
    return next(s for s in asked_spans(sentence) if s.text == text)


def _asks(sentence: str, fact: str) -> set[str]:
    """The rule questions of ``sentence`` for its fact ``fact``."""
    return {q.text for q in fact_questions(sentence, _span(sentence, fact))}


@pytest.mark.parametrize(
    ("sentence", "fact", "expected"),
    [
        ("The crossing takes 35 minutes.", "35 minutes", "How many minutes does the crossing take?"),
        (
            "The larger boat, the Lumora Grand, carries 410 passengers and 60 cars.",
            "410",
            "How many passengers does the Lumora Grand carry?",
        ),
        (
            "Calvane Transit today opened the Lumora line, an electric ferry service.",
            "Lumora",
            "Which line did Calvane Transit open?",
        ),
        (
            "Its first target was the comet C/2031 Brisk, photographed on the night of 14 February.",
            "C/2031 Brisk",
            "Which comet was Halden Telescope's first target?",
        ),
    ],
)
def test_a_fronted_question_asks_for_exactly_its_fact(sentence, fact, expected):
    questions = [q.text for q in fact_questions(sentence, _span(sentence, fact), "Halden Telescope")]
    assert expected in questions
    assert all(fact not in q for q in questions)


def test_the_relation_an_apposition_states_is_asked_and_answered():
    sentence = '"We expect to save a lot," said Marit Ekholm, the chief executive of Calvane Transit.'
    span = _span(sentence, "Marit Ekholm")
    assert [q.text for q in fact_questions(sentence, span)][0] == "Who is the chief executive of Calvane Transit?"
    assert fact_sentence(sentence, span) == "Marit Ekholm is the chief executive of Calvane Transit."


def test_common_nouns_in_capitals_and_initials_are_not_facts_of_their_own():
    """ "GPU instances", "generative AI", "the CPU" use words of the language, not facts of the page; "N. Virginia" is
    one name, not an "N" and a "Virginia"; an organisation in capitals still is a fact."""
    sentence = "Each Vantor node has 8 GPUs and a CPU for AI, built by NASA with J. Okafor in US East (N. Virginia)."
    facts = ["8", "Vantor", "NASA", "J. Okafor", "US East", "N. Virginia"]
    assert [s.text for s in asked_spans(sentence)] == facts
    assert [s.text for s in asked_spans("Boarding is at Gate B. Tidewell Ferries said 300 cars fit.")] == [
        "300",
        "Gate B",
        "Tidewell Ferries",
    ]  # a name that ends in a letter, then the next sentence: two names
    named = [s.text for s in asked_spans("The kit pairs USB-C with the ML-Agents toolkit, sold as X by Velto.")]
    assert named == ["USB-C", "ML-Agents", "X", "Velto"]
    assert [s.text for s in asked_spans("The previous generation of GPU-based instances used the same APIs.")] == []


def test_a_quote_attributed_to_a_bare_role_asks_for_the_person_and_the_organisation():
    """Press releases attribute quotes with a bare role ("said X, chief executive of Y"): both names are asked from the
    role, never from the quote, and the quote's first word is not a fact."""
    sentence = '"Cities lose water to leaks," said Ilse Marrakov, chief executive of Orvanta Metering.'
    assert [s.text for s in asked_spans(sentence)] == ["Ilse Marrakov", "Orvanta Metering"]
    person, company = asked_spans(sentence)
    assert fact_questions(sentence, person)[0].text == "Who is the chief executive of Orvanta Metering?"
    assert fact_questions(sentence, company)[0].text == "Ilse Marrakov is the chief executive of which company?"
    answer = "Ilse Marrakov is the chief executive of Orvanta Metering."
    assert fact_sentence(sentence, person) == fact_sentence(sentence, company) == answer
    assert not any("Cities" in q.text for q in fact_questions(sentence, company))
    designer = "Lena Dorn is the chief designer of the Vell laptops at Sarn Chips."
    asked = [q.text for q in fact_questions(designer, _span(designer, "Vell"))]
    assert "Lena Dorn is the chief designer of which laptops at Sarn Chips?" in asked  # not "which laptops laptops"


def test_a_quoted_figure_is_asked_as_what_the_speaker_or_their_organisation_said():
    """ "We" is the organisation of the speaker's role, "I" the speaker; a quote whose first person has no name, or
    that no named speaker said, is not asked."""
    sentence = (
        '"We expect to save 4,800 tonnes of diesel a year," said Marit Ekholm, the chief executive of Calvane Transit.'
    )
    span = _span(sentence, "4,800 tonnes")
    assert {q.text for q in fact_questions(sentence, span)} == {
        "Calvane Transit expects to save how many tonnes of diesel a year?",
        "How many tonnes of diesel does Calvane Transit expect to save a year?",
        "Calvane Transit expects to save how many tons of diesel a year?",  # reworded
        "How many tons of diesel does Calvane Transit expect to save a year?",
    }
    assert fact_sentence(sentence, span) == "Calvane Transit expects to save 4,800 tonnes of diesel a year."
    mine = '"I have spent 12 years on the Halden Telescope," Anouk Velde, the director of the observatory, said.'
    assert "How many years has Anouk Velde spent on the Halden Telescope?" in _asks(mine, "12 years")
    assert fact_sentence(mine, _span(mine, "12 years")) == "Anouk Velde has spent 12 years on the Halden Telescope."
    plain = '"The Kestrel K7 flies for 41 minutes," said Lena Marek, the founder of Corvane.'
    assert "How many minutes does the Kestrel K7 fly for?" in _asks(plain, "41 minutes")
    said = ", said Marit Ekholm, the chief executive of Calvane Transit since 2019."
    for quote, answer in (
        ("We now serve 14 cities", "Calvane Transit now serves 14 cities."),
        ("We carry 400 passengers a day", "Calvane Transit carries 400 passengers a day."),
        ("We need 300 engineers", "Calvane Transit needs 300 engineers."),
        ("We saw 40 percent growth", "Calvane Transit saw 40 percent growth."),
        ("We\u2019re opening 3 stores", "Calvane Transit is opening 3 stores."),
    ):
        sentence = f'"{quote},"{said}'
        assert fact_sentence(sentence, asked_spans(sentence)[0]) == answer
    for unnamed in (
        '"We cut emissions by 40 percent," said Lena Marek, the founder of Corvane.',  # past or present: not told
        '"We don\'t plan more than 40 minutes," said Lena Marek, the founder of Corvane.',
        '"We pride ourselves on 40 minutes," said Lena Marek, the founder of Corvane.',
        '"Our drones fly for 41 minutes," said Lena Marek, the founder of Corvane.',  # whose drones: not said
        '"We fly for 41 minutes," said Lena Marek.',  # "we": no organisation given
        '"We fly for 41 minutes," the company said.',  # no speaker named
    ):
        fact = next(sp for sp in asked_spans(unnamed) if sp.text[0].isdigit())
        assert fact_questions(unnamed, fact) == []


def test_an_amount_is_fronted_with_what_it_is_of():
    assert "How many people does Calvane Transit employ?" in _asks("Calvane Transit employs 5,000 people.", "5,000")
    farm = "The solar farm covers 40 hectares of a former coal mine."
    assert "How many hectares of a former coal mine does the solar farm cover?" in _asks(farm, "40")
    mill = "The mill produces 40 tonnes of grade A steel."
    assert "How many tonnes of grade A steel does the mill produce?" in _asks(mill, "40 tonnes")
    assert active("The boats are carried by \x00", "which company") == "Which company carries the boats?"
    bandwidth = "P5 instances deliver 3,200 Gbps of aggregate network bandwidth with support for GPUDirect RDMA."
    assert not any(" deliver of " in q for q in _asks(bandwidth, "3,200 Gbps"))  # not "... deliver of aggregate ..."


def test_the_company_a_release_opens_with_is_asked_from_its_product():
    """ "X, a maker based in Y, launched the P on <date>": the company is asked from the product, the place from the
    product's maker, and the date's clause names the company, not the last word of its apposition."""
    sentence = "Brisa Robotics, a mower maker based in Ghent, Belgium, launched the Tarn M3 garden robot on May 2."

    answer = "Brisa Robotics launched the Tarn M3 garden robot."
    company = [q.text for q in fact_questions(sentence, _span(sentence, "Brisa Robotics"))]
    assert {"Who makes the Tarn M3?", "Which company is behind the Tarn M3?"} <= set(company)
    assert "Which mower maker launched the Tarn M3 garden robot?" in company
    assert not any("opened" in q for q in company)  # "launched" is said otherwise as "introduced", never "opened"
    assert fact_sentence(sentence, _span(sentence, "Brisa Robotics")) == answer
    place = [q.text for q in fact_questions(sentence, _span(sentence, "Ghent"))]
    assert {"Where is the maker of the Tarn M3 based?", "Where is Brisa Robotics based?"} <= set(place)
    assert "In which city is Brisa Robotics based?" in place  # a country follows: the place is a city
    located = "Brisa Robotics, the maker of the Tarn M3, is based in Ghent, Belgium."
    assert fact_sentence(sentence, _span(sentence, "Ghent")) == fact_sentence(sentence, _span(sentence, "Belgium"))
    assert fact_sentence(sentence, _span(sentence, "Ghent")) == located
    country = [q.text for q in fact_questions(sentence, _span(sentence, "Belgium"))]
    assert {"In which country is the maker of the Tarn M3 based?", "In which country is Brisa Robotics based?"} <= set(
        country
    )
    head = "Orvanta Metering, a maker of utility equipment headquartered in Brennholt, announced the Tidewell T2."
    office = [q.text for q in fact_questions(head, _span(head, "Brennholt"))]
    assert {"Where is Orvanta Metering headquartered?", "Where is Orvanta Metering's head office?"} <= set(office)
    assert not any("city" in q for q in office)  # no country after it: a town, a city or a region
    date = [q.text for q in fact_questions(sentence, _span(sentence, "May 2"))]
    assert "When did Brisa Robotics launch the Tarn M3 garden robot?" in date
    assert not any("Belgium" in q for q in date)
    dated = "Brisa Robotics launched the Tarn M3 garden robot on May 2."
    assert fact_sentence(sentence, _span(sentence, "May 2")) == dated
    product = [q.text for q in fact_questions(sentence, _span(sentence, "Tarn M3"))]
    assert "Which garden robot did Brisa Robotics launch?" in product
    perfect = "Sarn Chips has announced the Vell X2, the successor to the Vell X1."  # "has announced": the same
    assert "Who makes the Vell X2?" in [q.text for q in fact_questions(perfect, _span(perfect, "Sarn Chips"))]
    opened = "The city of Varn opened its first tram line on May 2, 2026."  # not a name alone: no maker to ask for
    assert not any("behind" in q.text for q in fact_questions(opened, _span(opened, "May 2, 2026")))


def test_the_answer_is_the_facts_clause_with_its_subject_and_one_fact_on_request():
    sentence = "The larger boat, the Lumora Grand, carries 410 passengers and 60 cars; the smaller Lumora Swift " + (
        "carries 180 passengers."
    )
    grand = "The Lumora Grand carries 410 passengers and 60 cars."
    assert fact_sentence(sentence, _span(sentence, "410")) == fact_sentence(sentence, _span(sentence, "60")) == grand
    assert fact_sentence(sentence, _span(sentence, "410"), split=True) == "The Lumora Grand carries 410 passengers."
    assert fact_sentence(sentence, _span(sentence, "60"), split=True) == "The Lumora Grand carries 60 cars."
    assert fact_sentence(sentence, _span(sentence, "180")) == "The smaller Lumora Swift carries 180 passengers."
    it = "Utilities can order it for 89 euros per unit."
    assert (
        fact_sentence(it, _span(it, "89 euros"), "Tidewell T2")
        == "Utilities can order Tidewell T2 for 89 euros per unit."
    )


def test_a_price_is_asked_as_what_the_product_costs():
    sentence = "Farms can order it for 240 euros per unit, with discounts for cooperatives."
    span = _span(sentence, "240 euros")
    questions = [q.text for q in fact_questions(sentence, span, "Tarn M3")]
    assert {"How much does the Tarn M3 cost?", "What is the price of the Tarn M3?"} <= set(questions)
    assert fact_sentence(sentence, span, "Tarn M3") == "Farms can order Tarn M3 for 240 euros per unit."
    paid = "The project cost 9 million euros, of which the government of Varn paid 3 million euros."
    assert not any("cost?" in q.text for q in fact_questions(paid, _span(paid, "3 million euros")))


def test_a_cost_without_a_product_name_is_asked_of_what_the_sentence_says_costs_it():
    """A price in millions, and a thing the page names with a plain noun: asked "how much", in the verb's tense."""
    paid = "The project cost 9 million euros, of which the government of Varn paid 3 million euros."
    assert {"How much did the project cost?", "What was the cost of the project?"} <= _asks(paid, "9 million euros")
    tickets = "Tickets cost 6.50 euros for adults, and children travel free."
    assert {"How much do tickets cost for adults?", "What is the cost of tickets for adults?"} <= _asks(
        tickets, "6.50 euros"
    )
    assert "How much does a single ticket cost?" in _asks("A single ticket costs 1.60 euros.", "1.60 euros")


def test_a_sale_date_and_a_lifetime_are_asked_the_ways_buyers_ask_them():
    on_sale = "The Tarn M3 goes on sale on May 2, 2026."
    asked = [q.text for q in fact_questions(on_sale, _span(on_sale, "May 2, 2026"))]
    assert {"When can you buy the Tarn M3?", "From what date is the Tarn M3 available?"} <= set(asked)
    shops = "Mowers built on the Tarn M3 will reach shops from 9 June 2026."
    assert "When do mowers built on the Tarn M3 go on sale?" in [
        q.text for q in fact_questions(shops, _span(shops, "9 June 2026"))
    ]
    cell = "Its sealed cell is rated to last 12 years without replacement."
    asked = [q.text for q in fact_questions(cell, _span(cell, "12 years"), "Tarn M3")]
    assert {
        "How long does Tarn M3's sealed cell last?",
        "For how long is Tarn M3's sealed cell rated to last?",
    } <= set(asked)
    crossing = "The crossing takes 35 minutes, against 50 minutes on the diesel ferries."
    assert "How long does the crossing take?" in {
        q.text for q in fact_questions(crossing, _span(crossing, "35 minutes"))
    }
    paid = "The city paid 3 million euros on May 2, 2026."  # a date, but nothing goes on sale
    assert not any("buy" in q.text for q in fact_questions(paid, _span(paid, "May 2, 2026")))


def test_a_rule_question_that_names_what_it_stands_for_is_kept():
    """ "Farms can order it for 240 euros": "How much does the Tarn M3 cost?" shares no word with the sentence as the
    page says it, and is kept (it was made from the sentence with "it" named)."""
    passage = Passage(
        "d1p1", "tarn.md", "Tarn M3", "The Tarn M3 goes on sale on May 2. Farms can order it for 240 euros."
    )
    rows = generate_questions([passage], _Silent(), AugmentConfig(rewrites=0, round_trip=False), Progress())
    kept = {r["question"] for r in rows if r["kept"] and r["fact"] == "240 euros"}
    assert {"How much does the Tarn M3 cost?", "What is the price of the Tarn M3?"} <= kept


def test_today_is_left_out_of_questions_and_answers():
    sentence = "Brisa Robotics today announced the Tarn M3, a garden robot."
    span = _span(sentence, "Tarn M3")
    assert "What did Brisa Robotics announce?" in [q.text for q in fact_questions(sentence, span)]
    assert not any("today" in q.text for q in fact_questions(sentence, span))
    assert fact_sentence(sentence, span) == "Brisa Robotics announced the Tarn M3."


def _page_fact(title: str, paragraphs: list[str], fact: str):
    """The fact ``fact`` of one page of ``paragraphs``, each a passage, as ``page_facts`` finds it."""
    passages = [Passage(f"d1p{i + 1}", "file:///page.md", title, text) for i, text in enumerate(paragraphs)]
    return next(f for f in page_facts(passages) if f.text == fact)


def test_a_paragraph_that_opens_with_its_means_what_the_paragraph_before_named():
    """ "Its battery ..." after a paragraph about the product is the product's battery, not the title's company's."""
    title = "Brisa Robotics unveils the Tarn M3 garden robot"
    first = "The Tarn M3 goes on sale on May 2. Farms can order it today."
    battery = _page_fact(title, [first, "Its battery lasts 9 hours on one charge."], "9 hours")
    assert battery.topic == "the Tarn M3"  # with the article the page gives it
    answer = fact_sentence(battery.sentence, battery.span, battery.topic)
    assert answer == "The Tarn M3's battery lasts 9 hours on one charge."


def test_she_and_its_are_read_as_who_and_what_the_sentence_before_named():
    text = (
        "Lena Dorn is the chief architect of the Vell X2 at Sarn Chips. She joined Sarn in 2017, having trained in "
        "physics at Ostby College, and runs a team of 140 designers. The Vell X2 packs 42 cores, up from 38 cores "
        "in the Vell X1. Its top clock speed is 3.6 GHz."
    )
    found = page_facts([Passage("d1p1", "file:///vell.md", "Vell", text)])
    facts = {f.text: f for f in found}
    assert not [f for f in found if f.text == "Lena Dorn" and f.sentence.startswith("Lena Dorn joined")]
    joined = [q.text for q in fact_questions(facts["2017"].sentence, facts["2017"].span)]
    assert "What year did Lena Dorn join Sarn?" in joined
    team = facts["140"]
    assert fact_sentence(team.sentence, team.span, team.topic) == "Lena Dorn runs a team of 140 designers."
    college = [q.text for q in fact_questions(facts["Ostby College"].sentence, facts["Ostby College"].span)]
    assert college[0] == "Lena Dorn trained in physics where?"
    studied = {
        "Where did Lena Dorn study?",
        "Which school did Lena Dorn attend?",
        "Where did Lena Dorn study physics?",
    }
    assert studied <= set(college)
    team_asked = {q.text for q in fact_questions(team.sentence, team.span, team.topic)}
    assert {"How many people does Lena Dorn run?", "How big is the team Lena Dorn runs?"} & team_asked == {
        "How big is the team Lena Dorn runs?"
    }  # "runs a team": not "How many people does she run?"
    after = "Mira Holt joined Sarn in 2019 after studying chemistry at Vessel University."
    assert {"Where did Mira Holt study chemistry?", "Which school did Mira Holt attend?"} <= _asks(
        after, "Vessel University"
    )
    leads = "Mira Holt leads a group of 140 chip designers."
    assert {"How many people does Mira Holt lead?", "How many people are in Mira Holt's group?"} <= _asks(leads, "140")
    clock = facts["3.6 GHz"]
    assert fact_sentence(clock.sentence, clock.span, clock.topic) == "The Vell X2's top clock speed is 3.6 GHz."
    asked = {q.text for q in fact_questions(clock.sentence, clock.span, clock.topic)}
    assert {"What is the top clock speed of the Vell X2?", "What is the Vell X2's top clock speed?"} <= asked


def test_an_agent_and_a_size_are_asked_the_way_people_ask_them():
    built = "The route is served by three buses built by the Ulm works of Vessa Motors."
    assert {"Who built the buses?", "Which company built the buses?"} <= {
        q.text for q in fact_questions(built, _span(built, "Vessa Motors"))
    }
    sized = "The new dish replaces the older Kell Array, which has a 4.5-metre antenna."
    assert "How big is the antenna of the Kell Array?" in [q.text for q in fact_questions(sized, _span(sized, "4.5"))]
    weight = "The Kell Array has a 40-tonne base."  # a weight is not a size
    assert not any("How big" in q.text for q in fact_questions(weight, _span(weight, "40")))


def test_a_paragraph_that_names_nothing_goes_on_about_what_the_one_before_named():
    title = "Vessa Motors launches the Kell K2 scooter"
    first = "The Kell K2 weighs 14 kg and rides 60 km on one charge."
    price = _page_fact(title, [first, "The scooter folds flat. It sells for 890 euros in Ghent."], "890 euros")
    assert price.topic == "the Kell K2"
    line = "The tram line was built by the firm Ostra Works and cost 9 million euros. Its trams carry 240 people."
    trams = _page_fact("Kell Line", [line], "240")
    assert trams.topic != "Ostra Works"


def test_a_coordination_is_cut_to_the_half_that_holds_the_fact():
    cast = "The new mirror was cast by the glassworks Feldt & Sorn and weighs 19 tonnes."
    assert fact_sentence(cast, _span(cast, "19 tonnes"), split=True) == "The new mirror weighs 19 tonnes."
    by = fact_sentence(cast, _span(cast, "Feldt & Sorn"), split=True)
    assert by == "The new mirror was cast by the glassworks Feldt & Sorn."
    weight = [q.text for q in fact_questions(cast, _span(cast, "19 tonnes"))]
    assert "How many tonnes does the new mirror weigh?" in weight
    assert not any("Feldt" in q for q in weight)
    maker = [q.text for q in fact_questions(cast, _span(cast, "Feldt & Sorn"))]
    assert "Which glassworks was the new mirror cast by?" in maker
    assert not any("tonnes" in q for q in maker)
    cars = "The Lumora Grand carries 410 passengers and 60 cars and no bikes."
    assert "410 passengers" not in " ".join(q.text for q in fact_questions(cars, _span(cars, "60")))


def test_each_fact_is_asked_trimmed_and_inside_another_question():
    sentence = "Each boat recharges at Pellisk for 12 minutes between crossings from a shore battery."
    texts = {q.text: q.origin for q in fact_questions(sentence, _span(sentence, "12 minutes"))}
    assert texts["Each boat recharges at Pellisk for how many minutes?"] == "cloze+trimmed"
    assert texts["How many minutes does each boat recharge at Pellisk for?"] == "fronted+trimmed"
    assert texts["Do you know for how many minutes each boat recharges at Pellisk?"] == "embedded"
    departure = "The first departure leaves Pellisk at 5:40 every morning."
    texts = [q.text for q in fact_questions(departure, _span(departure, "5:40"))]
    assert "When does the first departure leave Pellisk every morning?" in texts
    assert "Can you tell me when the first departure leaves Pellisk every morning?" in texts
    tickets = "Tickets for the line cost 6.50 euros."  # a common noun that opened the sentence is not a name
    assert "Do you know how many euros tickets for the line cost?" in _asks(tickets, "6.50 euros")
    # a name that qualifies a plural moves with it ("which Tensor Core GPUs"); a fact after "up to" does not move
    gpus = "P5 instances are powered by NVIDIA H100 Tensor Core GPUs."
    assert [q.text for q in fact_questions(gpus, _span(gpus, "NVIDIA H100")) if q.origin == "embedded"] == [
        "Do you know by which Tensor Core GPUs P5 instances are powered?",
        "Can you tell me by which Tensor Core GPUs P5 instances are powered?",
    ]
    bound = "The drone flies for up to 41 minutes on one battery."
    assert not [q for q in fact_questions(bound, _span(bound, "41 minutes")) if q.origin.startswith("embedded")]


def test_a_role_is_asked_the_ways_english_turns_it_around():
    ceo = '"We expect to save a lot," said Marit Ekholm, the chief executive of Calvane Transit.'
    texts = [q.text for q in fact_questions(ceo, _span(ceo, "Marit Ekholm"))]
    assert texts[:3] == [
        "Who is the chief executive of Calvane Transit?",
        "Who is Calvane Transit's chief executive?",
        "Who heads Calvane Transit?",
    ]
    company = [q.text for q in fact_questions(ceo, _span(ceo, "Calvane Transit"))]
    assert "Which company does Marit Ekholm head?" in company
    director = "Anouk Velde, the observatory's director, said the telescope is ready."
    names = ("Orrin Observatory", "Anouk Velde")
    texts = [q.text for q in fact_questions(director, _span(director, "Anouk Velde"), names=names)]
    assert "Who is the director of the Orrin Observatory?" in texts
    assert fact_sentence(director, _span(director, "Anouk Velde"), names=names) == (
        "Anouk Velde is the Orrin Observatory's director."
    )
    copula = "Lena Marsh is the chief architect of the Quarro V4 at Halvren Semiconductor."
    texts = [q.text for q in fact_questions(copula, _span(copula, "Lena Marsh"))]
    assert texts[0] == "Who is the chief architect of the Quarro V4 at Halvren Semiconductor?"
    assert not any("Semiconductor's" in t for t in texts)  # "the Quarro V4 at Halvren"'s: not turned around
    successor = "Quarro V4 is the successor to the Quarro V3 processor."
    assert not [q for q in fact_questions(successor, _span(successor, "Quarro V3")) if q.origin == "relation"]


def test_a_short_name_is_used_only_where_it_tells_the_names_apart():
    short = short_names(["Tidewell T2", "Orvanta Metering", "Lumora Grand", "Lumora Swift", "Calvane Transit"])
    assert short == {"Tidewell T2": "T2", "Orvanta Metering": "Orvanta", "Calvane Transit": "Calvane"}
    sentence = "The Tidewell T2 goes on sale on October 6, 2026."
    texts = [q.text for q in fact_questions(sentence, _span(sentence, "October 6, 2026"), "", short)]
    assert "When does the Tidewell T2 go on sale?" in texts
    assert "When does the T2 go on sale?" in texts


def test_one_of_two_look_alike_models_is_also_asked_as_the_page_describes_it():
    """ "the compact Vell 5 and the larger Vell 9": questions about the Vell 5 also ask about "the compact Vell" and
    "the smaller Vell"; a name with no look-alike, or "the first" of something, gets no description."""
    texts = ["Sarn sells two sizes: the compact Vell 5 and the larger Vell 9. The first Sarn Tab 3 ships in May."]
    described = described_names(texts)
    assert described == {
        "Vell 5": ["the compact Vell", "the smaller Vell"],
        "Vell 9": ["the larger Vell", "the bigger Vell"],
    }
    sentence = "The Vell 5 weighs 1.4 kg."
    asked = [q for q in fact_questions(sentence, _span(sentence, "1.4 kg"), described=described)]
    assert "How many kg does the Vell 5 weigh?" in [q.text for q in asked]
    assert {"How many kg does the compact Vell weigh?", "How many kg does the smaller Vell weigh?"} <= {
        q.text for q in asked if q.origin.endswith("+described")
    }
    assert fact_sentence(sentence, _span(sentence, "1.4 kg")) == sentence  # the answer keeps the model's own name


def test_a_count_of_named_things_and_an_item_of_a_list_are_asked_with_their_subject():
    """ "8 NVIDIA H100 GPUs": the count asked with what is counted, "does ... have" (not "has ... ?"); "..., 2 TB of
    system memory and ...": a list item asked of the subject and verb the list's first clause gives it."""
    sentence = "Each p5.48xlarge instance has 8 NVIDIA H100 GPUs with 640 GB of GPU memory, 3rd generation AMD EPYC "
    sentence += "processors, 2 TB of system memory and 30 TB of local NVMe storage."
    asked = {q.text for q in fact_questions(sentence, _span(sentence, "8"))}
    assert {
        "How many NVIDIA H100 GPUs does each p5.48xlarge instance have?",
        "Each p5.48xlarge instance has how many NVIDIA H100 GPUs?",
    } <= asked
    memory = [q.text for q in fact_questions(sentence, _span(sentence, "2 TB"))]
    assert set(memory) == {
        "Each p5.48xlarge instance has how many TB of system memory?",
        "How many TB of system memory does each p5.48xlarge instance have?",
        "How much system memory does each p5.48xlarge instance have?",
        "What is the system memory of a p5.48xlarge instance?",
        "Each p5.48xlarge instance has how many TB of system RAM?",
        "How many TB of system RAM does each p5.48xlarge instance have?",
        "How much system RAM does each p5.48xlarge instance have?",
        "What is the system RAM of a p5.48xlarge instance?",
    }
    assert fact_sentence(sentence, _span(sentence, "2 TB")).startswith("Each p5.48xlarge instance has 2 TB")


def test_a_model_code_said_alone_is_asked_and_answered_with_its_full_name():
    """ "the V3 peaked at 3.2 GHz" beside the Quarro V4: the questions and the answer name the Quarro V3, and the
    page's description of it ("the older Quarro") is asked too; a code two names share is never expanded."""
    text = (
        "Halvren replaces the older Quarro V3 with the new Quarro V4. The V4 packs 42 cores. "
        "Its top clock is 3.6 GHz, where the V3 peaked at 3.2 GHz."
    )
    codes = model_codes([text])
    assert codes == {"V3": "Quarro V3", "V4": "Quarro V4"}
    assert model_codes(["The Quarro V3 and the Tarn V3 ship."]) == {}
    sentence = "Its top clock is 3.6 GHz, where the V3 peaked at 3.2 GHz."
    span = _span(sentence, "3.2 GHz")
    asked = {q.text for q in fact_questions(sentence, span, described=described_names([text]), codes=codes)}
    assert {"How many GHz did the Quarro V3 peak at?", "How many GHz did the older Quarro peak at?"} <= asked
    assert not any(re.search(r"(?<!Quarro )V3", q) for q in asked if "Quarro" in q)
    rows = generate_questions(
        [Passage("d1p1", "quarro.md", "Quarro", text)],
        _Silent(),
        AugmentConfig(rewrites=0, round_trip=False),
        Progress(),
    )
    answers = {r["answer"] for r in rows if r["fact"] == "3.2 GHz"}
    assert answers == {"The Quarro V3 peaked at 3.2 GHz."}
    assert in_full("The Quarro V3 and the V3 Pro", codes) == "The Quarro V3 and the V3 Pro"  # said in full already


@pytest.mark.parametrize(
    ("sentence", "fact", "answer", "question"),
    [
        (  # a comparison's other side: the V1's own clause
            "The Vell X2 packs 42 cores, up from 38 cores in the Vell X1.",
            "38",
            "The Vell X1 packs 38 cores.",
            "How many cores does the Vell X1 pack?",
        ),
        (  # "where" with a subject of its own
            "The X2's top clock speed is 3.6 GHz, where the X1 peaked at 3.2 GHz.",
            "3.2 GHz",
            "The X1 peaked at 3.2 GHz.",
            "The X1 peaked at how many GHz?",
        ),
        (  # the clause after a colon, not the remark before it
            "The new chip is also more frugal: the Vell X2 draws at most 95 watts.",
            "95 watts",
            "The Vell X2 draws at most 95 watts.",
            "How many watts does the Vell X2 draw at most?",
        ),
    ],
)
def test_a_clause_with_its_own_subject_is_asked_and_answered_alone(sentence, fact, answer, question):
    assert fact_sentence(sentence, _span(sentence, fact)) == answer
    assert question in [q.text for q in fact_questions(sentence, _span(sentence, fact))]


def test_a_relative_clause_with_its_own_subject_is_not_said_of_the_noun_before_it():
    """ "..., which Sarn chose to keep the price down": Sarn is not "the Vell X1" that chose."""
    sentence = "It costs $1,299 and uses the older Vell X1 chip, which Sarn chose to keep the price down."
    assert not any(
        "Vell X1 Sarn" in q.text or "X1 what" in q.text
        for q in fact_questions(sentence, _span(sentence, "Sarn"), "Vell 5")
    )
    asked = [q.text for q in fact_questions(sentence, _span(sentence, "1,299"), "Vell 5")]
    assert "How much does the Vell 5 cost?" in asked  # a price in dollars, its product a model number


def test_fronting_leaves_a_clause_whose_verb_is_not_plain_alone():
    assert fronted("The line is served by two boats built by the yard of \x00", "which company") == ""


def test_every_fact_of_a_small_page_gets_its_questions_and_a_one_fact_answer():
    rows = generate_questions([PASSAGE], _Silent(), AugmentConfig(rewrites=0, round_trip=False), Progress())
    kept = [r for r in rows if r["kept"]]
    facts = {f.text for f in page_facts([PASSAGE])}
    assert {
        "Calvane Transit",
        "Varnholm",
        "35 minutes",
        "410",
        "60",
        "180",
        "6.50 euros",
        "5:40",
        "Marit Ekholm",
    } <= facts
    asked = {r["fact"] for r in kept}
    assert asked >= facts  # the quoted figure too, as what the speaker's company expects
    for row in kept:
        assert row["fact"] not in row["question"]
        assert any(alias in row["answer"] for alias in fact_aliases(row["fact"]))
    by_fact = {f: [r for r in kept if r["fact"] == f] for f in asked}
    assert len(by_fact["410"]) >= 2 and len({r["answer"] for r in by_fact["410"]}) == 1
    assert by_fact["410"][0]["answer"] != by_fact["180"][0]["answer"]  # one fact, one answer: not the page's sentence


def test_the_round_trip_drops_a_question_the_reader_does_not_answer_with_its_fact():
    rows = [
        {"passage": "d1p1", "fact": "35 minutes", "question": "How long is the crossing?", "kept": True},
        {"passage": "d1p1", "fact": "35 minutes", "question": "What does the crossing replace?", "kept": True},
    ]
    reader = _Reader({"How long": "The crossing takes 35 minutes.", "replace": "It replaces diesel ferries."})
    round_trip(rows, page_facts([PASSAGE]), reader, Progress())
    assert rows[0]["kept"] and rows[0]["reader"] == "The crossing takes 35 minutes."
    assert not rows[1]["kept"] and "round trip" in rows[1]["reason"]


def test_model_written_questions_go_through_the_round_trip():
    class _Rewriter(_Reader):
        def chat(self, conversations, max_new_tokens, temperature, seed=0):
            asked = [c[-1]["content"] for c in conversations]
            if all("Rewrite the question" in a for a in asked):
                return [
                    "How long is the trip?" if "how many minutes" in a else "What is the answer here?" for a in asked
                ]
            return super().chat(conversations, max_new_tokens, temperature, seed)

    config = AugmentConfig(rewrites=1, rewrites_per_fact=0, round_trip=True)
    rows = generate_questions(
        [PASSAGE], _Rewriter({"How long is the trip": "It takes 35 minutes."}), config, Progress()
    )
    rewrites = [r for r in rows if r["origin"] == "rewrite"]
    kept = [r for r in rewrites if r["kept"]]
    assert [r["question"] for r in kept] == ["How long is the trip?"] and kept[0]["fact"] == "35 minutes"
    dropped = [r["reason"] for r in rewrites if not r["kept"]]
    assert dropped and all(
        "round trip" in why or why == "asked already" or "which the question it rewords names" in why
        for why in dropped
    )
    assert any("round trip" in why for why in dropped)


def test_a_rewording_that_drops_the_name_its_question_says_is_dropped():
    """A rewording of "How many passengers does the Lumora Grand carry?" without "Lumora Grand" asks about any boat
    (the Lumora Swift carries 180): it is dropped, though the reader answers it with 410; with the name it is kept."""

    class _Rewriter(_Reader):
        def chat(self, conversations, max_new_tokens, temperature, seed=0):
            asked = [c[-1]["content"] for c in conversations]
            if all("Rewrite the question" in a for a in asked):
                return [
                    (
                        "How many people does the boat take?"
                        if temperature
                        else "How many people fit on the Lumora Grand?"
                    )
                    if "How many passengers does the Lumora Grand carry?" in a
                    else ""
                    for a in asked
                ]
            return super().chat(conversations, max_new_tokens, temperature, seed)

    reader = _Rewriter({"How many people": "The Lumora Grand carries 410 passengers."})
    rows = generate_questions(
        [PASSAGE], reader, AugmentConfig(rewrites=2, rewrites_per_fact=0, round_trip=True), Progress()
    )
    reworded = {r["question"]: r for r in rows if r["origin"] in ("rewrite", "sampled") and r["question"]}
    kept = reworded["How many people fit on the Lumora Grand?"]
    assert (
        kept["kept"]
        and kept["fact"] == "410"
        and kept["rewords"] == "How many passengers does the Lumora Grand carry?"
    )
    dropped = reworded["How many people does the boat take?"]
    assert not dropped["kept"] and dropped["reason"] == "drops Lumora Grand, which the question it rewords names"


def test_a_fact_asked_one_way_by_rule_gets_more_rewordings():
    """With ``rewrites_per_fact`` 6, a fact whose sentence makes one question to reword has it reworded six times
    (the first greedy, five sampled); a fact with two has each reworded three times, as ``rewrites`` asks."""

    class _Counter(_Silent):
        def __init__(self):
            self.asked: list[tuple[str, float]] = []

        def chat(self, conversations, max_new_tokens, temperature, seed=0):
            self.asked += [(c[-1]["content"], temperature) for c in conversations if "Rewrite" in c[-1]["content"]]
            return ["" for _ in conversations]

    def rewordings(config: AugmentConfig) -> dict[str, list[float]]:
        counter = _Counter()
        rows = generate_questions([PASSAGE], counter, config, Progress())
        bases = {r["question"]: r["fact"] for r in rows if r["origin"] in ("cloze", "fronted", "relation")}
        per_fact: dict[str, list[float]] = {}
        for asked, temperature in counter.asked:
            fact = next(f for q, f in bases.items() if q in asked)
            per_fact.setdefault(fact, []).append(temperature)
        return per_fact

    plain = rewordings(AugmentConfig(rewrites=3, rewrites_per_fact=0, round_trip=False))
    filled = rewordings(AugmentConfig(rewrites=3, rewrites_per_fact=6, round_trip=False))
    assert any(len(t) == 3 for t in plain.values()), plain  # a fact of one rule question: three rewordings
    for fact, temperatures in filled.items():
        assert len(temperatures) == max(6, len(plain[fact])), (fact, temperatures)
        assert temperatures.count(0.0) == len(plain[fact]) // 3  # one greedy a rule question, the rest sampled


def test_the_data_report_counts_what_the_questions_ask():
    other = Passage("d1p2", "ferry.md", "Lumora", "The yard of Brenmar Marine built both boats in 2025.")
    rows = [
        {
            "passage": "d1p1",
            "fact": "35 minutes",
            "question": "How long is the crossing?",
            "answer": "The crossing takes 35 minutes.",
            "kept": True,
            "origin": "fronted",
        },
        # planted: asks for the price, answered with the crossing time
        {
            "passage": "d1p1",
            "fact": "6.50 euros",
            "question": "What does a ticket cost?",
            "answer": "The crossing takes 35 minutes.",
            "kept": True,
            "origin": "written",
        },
        # one answer for two facts
        {
            "passage": "d1p1",
            "fact": "410",
            "question": "How many passengers does the Lumora Grand carry?",
            "answer": "Lumora Grand carries 410 passengers and 60 cars.",
            "kept": True,
            "origin": "fronted",
        },
        {
            "passage": "d1p1",
            "fact": "60",
            "question": "How many cars does the Lumora Grand carry?",
            "answer": "Lumora Grand carries 410 passengers and 60 cars.",
            "kept": True,
            "origin": "fronted",
        },
    ]
    report = data_report(rows, [], [PASSAGE, other])
    assert report["mismatched"] == 1 and report["mismatched_examples"][0]["fact"] == "6.50 euros"
    assert report["answers_of_several_facts"] == 2  # the crossing sentence (35 minutes, 6.50 euros) and 410/60
    unasked = {f["fact"] for f in report["unasked"]}
    assert {"Brenmar Marine", "2025", "180", "6.50 euros"} <= unasked and "410" not in unasked
    assert next(f for f in report["unasked"] if f["fact"] == "2025")["sentence"] == other.text
    asked = {f["fact"]: f["questions"] for f in report["per_fact"]}
    assert asked["35 minutes"] == 1 and asked["6.50 euros"] == 0


def test_a_question_file_is_read_as_jsonl_or_csv(tmp_path):
    jsonl = tmp_path / "mine.jsonl"
    jsonl.write_text('{"question": "How long is the crossing?", "answer": "It takes 35 minutes."}\n\n')
    assert read_question_file(jsonl)[0]["question"] == "How long is the crossing?"
    csv = tmp_path / "mine.csv"
    csv.write_text('question,answer,source\n"Who runs it?","Calvane Transit runs it.",ferry.md\n')
    assert read_question_file(csv) == [
        {
            "question": "Who runs it?",
            "answer": "Calvane Transit runs it.",
            "source": "ferry.md",
            "line": 2,
            "file": "mine.csv",
        }
    ]


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("bad.jsonl", '{"question": "Q?", "answer": "A."}\n{"question": "Q2?"\n', "bad.jsonl:2: not a JSON object"),
        ("bad.jsonl", '{"question": "Q?", "answer": "A."}\n["Q", "A"]\n', "bad.jsonl:2: a JSON object"),
        ("bad.jsonl", '{"question": "Q?", "answer": 7}\n', "bad.jsonl:1: answer is a int, not text"),
        ("bad.jsonl", '{"question": " ", "answer": "A."}\n', "bad.jsonl:1: question is empty"),
        ("bad.csv", "question,reply\nQ?,A.\n", "bad.csv:1: the CSV header must name question and answer"),
        ("bad.csv", 'question,answer\nQ?,A.\n"Q2?",A2.,extra\n', "bad.csv:3: more cells than the header names"),
        ("empty.jsonl", "\n", "no question-answer pairs"),
    ],
)
def test_a_malformed_question_file_is_refused_with_its_line(tmp_path, name, text, message):
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(QuestionFileError, match=message.replace("[", r"\[")):
        read_question_file(path)


def test_user_questions_train_beside_the_generated_ones_and_are_reported(tiny_run, tmp_path):
    from kinject.augment import ensure_augmentation
    from kinject.corpus.blocks import ensure_blocks
    from kinject.models.loading import load_tokenizer, resolve_model
    from kinject.runs import RunDir
    from kinject.settings.stages import BlocksConfig

    mine = tmp_path / "mine.jsonl"
    rows = [
        {"question": "Which GPUs power the P5?", "answer": "NVIDIA H100 Tensor Core GPUs power the P5."},
        {"question": "What does a P5 cost?", "answer": "A P5 costs 98 dollars an hour."},  # the page says no price
    ]
    mine.write_text("".join(json.dumps(r) + "\n" for r in rows))
    config = AugmentConfig(questions=[str(mine)], rewrites=0, paraphrases_per_passage=0, replay_prompts=0)
    result = ensure_augmentation(tiny_run, config, ("qa",))
    user = result.kept("user")
    assert [r["question"] for r in user] == [r["question"] for r in rows]
    assert user[0]["warning"] == "" and "98" in user[1]["warning"]
    assert result.kept("qa")  # the generated pairs are there too
    run = RunDir(tiny_run)
    assert len(run.read_user_questions()) == 2 and run.read_data_report()["yours"] == 2
    tokenizer = load_tokenizer(resolve_model(run.section("model")["model"]))
    blocks = BlocksConfig(block_size=128, text_format="none", use_qa=True)
    dataset, _, _ = ensure_blocks(run, blocks, tokenizer, None, Progress(), result)
    text = tokenizer.decode([t for b in dataset["input_ids"] for t in b])
    assert "Which GPUs power the P5?" in text and "A P5 costs 98 dollars an hour." in text
    # gone from disk, the run's copy is used
    mine.unlink()
    again = ensure_augmentation(tiny_run, config, ("qa",))
    assert [r["question"] for r in again.kept("user")] == [r["question"] for r in rows]


def test_a_training_given_a_malformed_question_file_names_its_line_before_loading(tiny_run, tmp_path):
    from kinject.settings.training import TrainConfig
    from kinject.training.loop import TrainError
    from kinject.training.pipeline import train

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "How long is it?", "answer": "35 minutes."}\n{"question": 3, "answer": "x"}\n')
    with pytest.raises(TrainError, match=r"bad\.jsonl:2: question is a int") as caught:
        train(tiny_run, TrainConfig(max_steps=1), augment=AugmentConfig(questions=[str(bad)]))
    assert caught.value.phase == "check run"


def test_a_town_or_a_school_is_asked_with_where_and_a_company_is_not():
    def asked(sentence: str, name: str) -> list[str]:
        return [q.text for q in fact_questions(sentence, Span(sentence.index(name), name, "name"))]

    studio = asked("Mara Holt runs a studio of 35 people in Lindhaven.", "Lindhaven")
    assert "Where does Mara Holt run a studio of 35 people?" in studio
    assert "Mara Holt runs a studio of 35 people where?" in studio and not [q for q in studio if "in where" in q]
    graduated = asked("Piet Arno graduated from Vessel Institute.", "Vessel Institute")
    assert {"Where did Piet Arno study?", "Which school did Piet Arno attend?"} <= set(graduated)
    assert not [q for q in graduated if "train" in q]  # he graduated; nothing says he trained
    invested = asked("The fund invested in Brask Software.", "Brask Software")
    assert not [q for q in invested if q.startswith("Where") or " where" in q]
    month = asked("The plant opens in March.", "March")
    assert not [q for q in month if "where" in q.lower()]


def test_a_described_look_alike_keeps_one_adjective():
    described = described_names(["Corvane sells the compact Nimbus 12 and the larger Nimbus 16."])
    sentence = "The compact Nimbus 12 weighs 1.1 kg."
    found = fact_questions(sentence, Span(sentence.index("1.1"), "1.1 kg", "number"), described=described)
    said = [q.text for q in found if q.origin.endswith("+described")]
    assert any("the smaller Nimbus" in q for q in said)
    assert not [q for q in said if re.search(r"compact (?:the|smaller|compact)", q)]


def test_a_role_in_a_company_is_asked_from_the_product_the_company_makes():
    page = (
        "Orvanta Metering, a maker of utility equipment, today announced the Tidewell T2, a smart water meter. "
        '"Water is precious," said Ilse Marrakov, chief executive of Orvanta Metering.'
    )
    made = makers([page])
    assert made == {"Orvanta Metering": "the Tidewell T2"}
    quote = page[page.index('"Water') :]
    ceo = Span(quote.index("Ilse"), "Ilse Marrakov", "name")
    found = [q.text for q in fact_questions(quote, ceo, made=made)]
    assert {
        "Who is the chief executive of the company behind the Tidewell T2?",
        "Who heads the company behind the Tidewell T2?",
        "Who is the chief executive of Orvanta Metering?",
    } <= set(found)
    assert not [q for q in fact_questions(quote, ceo) if "behind" in q.text]  # no product known: not asked
    passage = Passage("d1p1", "t2.md", "Tidewell T2", page)
    rows = generate_questions([passage], _Silent(), AugmentConfig(rewrites=0, round_trip=False), Progress())
    asked = {r["question"] for r in rows if r["fact"] == "Ilse Marrakov"}
    assert "Who heads the company behind the Tidewell T2?" in asked  # the page's own product, after other facts


LUMORA = [
    "Calvane Transit today opened the Lumora line, an electric ferry service to the island of Varnholm. The crossing "
    "takes 35 minutes.",
    "The line is served by two boats built by Brenmar Marine. Tickets cost 6.50 euros for adults. The city plans a "
    "second pier for 2028.",
]


def _rows(paragraphs: list[str], title: str = "Ferry", **config: Any) -> list[dict]:
    passages = [Passage(f"d1p{i + 1}", "file:///page.md", title, text) for i, text in enumerate(paragraphs)]
    config = AugmentConfig(**{"rewrites": 0, "questions_per_fact": 0, "round_trip": False, **config})
    return [r for r in generate_questions(passages, _Silent(), config, Progress()) if r["kept"]]


def test_a_sentence_that_leaves_its_thing_to_the_one_before_says_it():
    """ "The crossing takes 35 minutes" on a page about the Lumora line (which it calls "the line") is asked and
    answered as the Lumora line's; "The line" is the Lumora line; the city is not the line's, and the words put in
    are not asked about."""
    rows = _rows(LUMORA)
    crossing = [r for r in rows if r["fact"] == "35 minutes"]
    assert "The crossing of the Lumora line takes how many minutes?" in {r["question"] for r in crossing}
    assert {r["answer"] for r in crossing} == {"The crossing of the Lumora line takes 35 minutes."}
    fare = {r["question"] for r in rows if r["fact"] == "6.50 euros"}
    assert "How much do tickets for the Lumora line cost for adults?" in fare
    built = {r["question"] for r in rows if r["fact"] == "Brenmar Marine"}
    assert any(q.startswith("The Lumora line is served by two boats built by") for q in built)
    assert {r["sentence"] for r in rows if r["fact"] == "2028"} == {"The city plans a second pier for 2028."}
    lumora = {r["sentence"] for r in rows if r["fact"] == "Lumora"}  # asked where the page says it, nowhere else
    assert lumora and all(s.startswith("Calvane") for s in lumora)


def test_a_part_said_with_its_thing_is_also_asked_by_the_thing_first():
    """ "The crossing of the Lumora line" is asked in turn as the page's words put it, as "the Lumora line's
    crossing", as "the Lumora line crossing" and, a journey, as "the crossing on the Lumora line" (users say all
    four), each question in one of them, and so is the trip or journey a question says instead; the answer keeps the
    sentence's own words, and so does the question that names the line by its description. A part of two words gets
    no compound ("the Lumora line first departure"), and a part that is no journey nothing "on" the line."""
    rows = _rows(LUMORA, kept_per_fact=100)  # every rule question, the trip's and the journey's too
    asked = [r["question"].lower() for r in rows if r["fact"] == "35 minutes" and "Lumora line" in r["question"]]
    forms = ("the {} of the lumora line", "the lumora line's {}", "the lumora line {}", "the {} on the lumora line")
    said = {
        (form, word): [q for q in asked if form.format(word) in q] for form in forms for word in ("crossing", "trip")
    }
    assert all(said.values()), said
    journeys = ("crossing", "trip", "journey")
    assert all(any(form.format(word) in q for form in forms for word in journeys) for q in asked), asked
    assert {r["answer"] for r in rows if r["fact"] == "35 minutes"} == {
        "The crossing of the Lumora line takes 35 minutes."
    }
    described = {r["question"] for r in rows if r["origin"] == "described" and r["fact"] == "35 minutes"}
    assert described == {"How long does the crossing of the electric ferry service to the island of Varnholm take?"}
    departure = ["Calvane Transit opened the Lumora line. The line runs daily.", "The first departure leaves at 5:40."]
    forms = {r["question"] for r in _rows(departure) if r["fact"] == "5:40"}
    assert any("the Lumora line's first departure" in q for q in forms)
    assert not any("Lumora line first departure" in q or " on the Lumora line" in q for q in forms)


def test_a_page_that_never_refers_back_to_a_thing_gets_no_thing_put_in():
    rows = _rows(["Calvane Transit today opened the Lumora line to Varnholm. The crossing takes 35 minutes."])
    assert {r["answer"] for r in rows if r["fact"] == "35 minutes"} == {"The crossing takes 35 minutes."}


def test_a_number_inside_a_name_does_not_count_as_the_answer_given_away():
    """ "8" is asked although "p5.48xlarge" holds an 8 (it was dropped as "contains its answer")."""
    rows = _rows(["Each p5.48xlarge instance has 8 NVIDIA H100 GPUs with 640 GB of GPU memory."], "P5")
    assert "How many NVIDIA H100 GPUs does each p5.48xlarge instance have?" in {
        r["question"] for r in rows if r["fact"] == "8"
    }


def test_a_name_that_qualifies_a_plural_and_a_passive_agent_are_asked_with_which():
    """ "powered by NVIDIA H100 Tensor Core GPUs": "which Tensor Core GPUs", fronted, and turned active."""
    sentence = "Amazon EC2 P5 instances are powered by NVIDIA H100 Tensor Core GPUs."
    asked = _asks(sentence, "NVIDIA H100")
    assert {
        "Amazon EC2 P5 instances are powered by which Tensor Core GPUs?",
        "Which Tensor Core GPUs are Amazon EC2 P5 instances powered by?",
        "Which Tensor Core GPUs power Amazon EC2 P5 instances?",
    } <= asked
    assert "Who cast the new mirror of the Halden Telescope?" in _asks(
        "The new mirror of the Halden Telescope was cast by the glassworks Feldt & Sorn.", "Feldt & Sorn"
    )


def test_a_thing_described_in_an_apposition_is_also_asked_as_described():
    """ "the Lumora line, an electric ferry service that links Pellisk with Varnholm": a relation question a fact
    also asks about "the electric ferry service that links ...", and the next one about "... service between Pellisk
    and Varnholm", never one whose description holds its answer."""
    rows = _rows(
        [
            "Calvane Transit today opened the Lumora line, an electric ferry service that links Pellisk with "
            "Varnholm. The crossing takes 35 minutes.",
            "The line is served by two boats.",
        ]
    )
    described: dict[str, list[str]] = {}
    for r in rows:
        if r["origin"] == "described":
            described.setdefault(r["fact"], []).append(r["question"])
    assert described["Calvane Transit"] == [
        "Who opened the electric ferry service that links Pellisk with Varnholm?",
        "Which company opened the electric ferry service between Pellisk and Varnholm?",
    ]
    assert "Pellisk" not in described and "Varnholm" not in described


def test_what_links_two_places_is_also_described_as_between_them():
    """As a reader asks about it: "the ferry service between Pellisk and Varnholm", the places by their names."""
    assert between("electric ferry service that links the harbour town of Pellisk with the island of Varnholm") == (
        "electric ferry service between Pellisk and Varnholm"
    )
    assert between("rail tunnel which connects Brisa to the Old Port") == "rail tunnel between Brisa and the Old Port"
    assert between("bridge that links the old town with the harbour") == ""  # no names: nothing to say
    assert between("drone maker based in Tallinn") == ""


def test_an_amount_in_a_list_is_asked_alone_and_by_what_it_is_of():
    """ "has 4 Teln chips, 512 GB of system memory and 8 TB of flash storage": each amount asked without the
    other items, fronted with what it is of, and as "How much <what>"; a count of things ("of cars") is not."""
    sentence = "Each Korva K9 server has 4 Teln chips, 512 GB of system memory and 8 TB of flash storage."
    memory, storage = _asks(sentence, "512 GB"), _asks(sentence, "8 TB")
    assert {
        "Each Korva K9 server has how many GB of system memory?",
        "How many GB of system memory does each Korva K9 server have?",
        "How much system memory does each Korva K9 server have?",
        "What is the system memory of a Korva K9 server?",
    } <= memory
    assert not any("8 TB" in q or "storage" in q for q in memory)
    assert {
        "How many TB of flash storage does each Korva K9 server have?",
        "How much flash storage does each Korva K9 server have?",
    } <= storage
    assert not any("512 GB" in q for q in storage)
    assert "How much aggregate bandwidth do Korva K9 servers deliver?" in _asks(
        "Korva K9 servers deliver 400 Gbps of aggregate bandwidth with support for Lanx links.", "400 Gbps"
    )
    assert "How much aggregate bandwidth do Korva K9 servers deliver?" not in _asks(
        "Korva K9 servers deliver 400 Gbps of aggregate bandwidth per rack.", "400 Gbps"
    )  # a rack's bandwidth, not the servers'
    counted = _asks("The depot has 60 rows of cars and 500 employees of its own.", "60")
    assert "The depot has how many rows of cars?" in counted  # a count of things, not an amount
    assert not any(q.startswith(("How much", "What is the")) for q in counted)
    assert "How many passengers did the airline notify of the delay?" in _asks(
        "The airline notified 300 passengers of the delay.", "300"
    )  # "of the delay" is the verb's, not the count's
    assert "How many GB of memory per node does the Vell hub have?" in _asks(
        "The Vell hub has 64 GB of memory per node.", "64 GB"
    )
    sourced = _asks("The Vell hub has 64 GB of memory from Sarn Chips.", "64 GB")
    assert {
        "How many GB of memory does the Vell hub have from Sarn Chips?",
        "How much memory does the Vell hub have?",
    } <= (sourced)  # what the amount is of ends at a preposition, in the fronted question and the "How much" one alike


def test_a_one_word_company_with_an_apposition_is_asked_from_what_it_introduced():
    """ "Corvane, a laptop maker from Lindhaven, has introduced two sizes of its new Nimbus notebook: ...": a
    sentence's first word is a name when an apposition follows it, and it is asked as the maker of the product."""
    sentence = (
        "Sarnit, a bicycle maker from Drenholm, has introduced two sizes of its new Vello frame: the Vello 50 and 56."
    )
    assert "Sarnit" in [s.text for s in asked_spans(sentence)]
    asked = _asks(sentence, "Sarnit")
    assert {"Which company introduced the new Vello frame?", "Who makes the new Vello frame?"} <= asked
    assert fact_sentence(sentence, _span(sentence, "Sarnit")) == "Sarnit introduced the new Vello frame."
    assert "Sarnit" not in [s.text for s in asked_spans("Sarnit makes frames in Drenholm since 1990.")]
    # an adverb before a comma is no company, with or without an apposition after it
    assert "Earlier" not in [s.text for s in asked_spans("Earlier, a trial ran in Ghent for 3 weeks.")]
    startup = "Yesterday, a Ghent startup, Vessa Motors, launched the Kell K2 scooter."
    assert "Yesterday" not in [s.text for s in asked_spans(startup)]
    assert not [q for q in _asks(startup, "Vessa Motors") if "Yesterday" in q]
    own = "Halvren Semiconductor has launched its own AI chip, the Quarro V4."
    assert fact_sentence(own, _span(own, "Halvren Semiconductor")) == "Halvren Semiconductor launched the AI chip."


def test_a_limit_and_an_instrument_are_asked_the_ways_readers_ask_them():
    """ "supports <object> with up to <fact> per vector": the limit asked without the verb's object; "Developers
    describe the actions an agent may take with <fact>": asked past the relative clause's auxiliary, and as what
    they use."""
    limit = _asks("The Sarn index supports nearest neighbor search with up to 9,000 fields per record.", "9,000")
    assert {
        "How many fields per record does the Sarn index support?",
        "Up to how many fields per record does the Sarn index support?",
        "What is the maximum number of fields per record the Sarn index supports?",
    } <= limit
    assert not any("search with up to per" in q for q in limit)
    plural = _asks("Customers store up to 40 TB per account.", "40 TB")
    assert "How many TB per account do customers store?" in plural
    assert not any("do Customers" in q for q in plural)
    priced = _asks("The Sarn index supports nearest neighbor search with up to 9 dollars per record.", "9 dollars")
    assert not any(q.startswith(("Up to", "What is the maximum")) for q in priced)  # a price is no limit
    tool = _asks("Designers describe the shapes a part may take with a Velto schema and store them in Sarn.", "Velto")
    assert {
        "With which schema do designers describe the shapes a part may take?",
        "Which schema do designers use to describe the shapes a part may take?",
        "Do you know with which schema designers describe the shapes a part may take?",
    } <= tool
    assert not any(
        q.startswith("How many days does")
        for q in _asks("The Sarn service stores snapshots with a retention of up to 35 days.", "35 days")
    )  # a retention's limit, not what the service stores
    past = _asks("Designers described the shapes a part may take with a Velto schema.", "Velto")
    assert not any(" do designers" in q or "use to described" in q for q in past)
    named = _asks("Reuters told the board the company would grow by 5%.", "5%")
    assert not any(" do reuters" in q.lower() or "reuters told" in q for q in named)
    assert "Where do engineers test the parts a car will use?" in _asks(
        "Engineers test the parts a car will use in Drenholm.", "Drenholm"
    )
    assert any(q.endswith("when Texas passed the law?") for q in _asks("Texas passed the law in 2021.", "2021"))


def test_a_reported_clause_and_a_subordinate_one_are_asked_as_clauses_of_their_own():
    """ "Orvane announced that <clause>" and "While <clause>, ...": the questions and the answer are of the clause."""
    reported = "Tarsis Labs announced that Pelto notebooks support Quillo, the coding assistant."
    asked = _asks(reported, "Quillo")
    assert "Pelto notebooks support what?" in asked
    assert not any("Tarsis" in q or "announce" in q for q in asked)
    assert fact_sentence(reported, _span(reported, "Quillo")) == "Pelto notebooks support Quillo."
    assert "Which company announced that Pelto notebooks support Quillo?" in _asks(reported, "Tarsis Labs")
    for said in ("Tarsis Labs confirmed that figure in Pellisk.", "Tarsis Labs said that it opens in Pellisk."):
        assert fact_sentence(said, _span(said, "Pellisk")) == said  # "that figure", "that it": no clause of its own
    subordinate = "While a pilot flies over the Tarn Valley, the Skyla app shows the weather."
    assert {"A pilot flies over what?", "What does a pilot fly over?"} <= _asks(subordinate, "Tarn Valley")
    assert fact_sentence(subordinate, _span(subordinate, "Tarn Valley")) == "A pilot flies over the Tarn Valley."


def test_the_half_after_and_with_a_plural_verb_is_left_out_of_a_fact_before_it():
    """ "describe each room with a Floorplan sketch and upload those rooms as Cadra files": the Floorplan question
    stops at "and"; the Cadra question keeps its whole clause (its subject is not plain to see)."""
    sentence = "Builders describe each room with a Floorplan sketch and upload those rooms as Cadra files."
    assert "Builders describe each room with which sketch?" in _asks(sentence, "Floorplan")
    assert not any("upload" in q for q in _asks(sentence, "Floorplan"))
    assert any("upload those rooms" in q for q in _asks(sentence, "Cadra"))
    only = "The ferry was built in Turku, and costs only 3 million euros a year to run."
    assert fact_sentence(only, _span(only, "3 million euros")) == "The ferry costs only 3 million euros a year to run."
    assert "What do Pelto notebooks now support?" in _asks("Pelto notebooks now support Quillo.", "Quillo")


def test_it_is_said_with_the_article_the_page_gives_the_thing():
    """ "The Kell K2 weighs 14 kg. It costs 890 euros.": the price is the Kell K2's, said as the page says it, with a
    capital at the start of a sentence; a company the page never writes with "the" stays bare."""
    text = "The Kell K2 weighs 14 kg and rides 60 km on one charge. It costs 890 euros in Ghent."
    price = _page_fact("Vessa Motors launches the Kell K2 scooter", [text], "890 euros")
    assert fact_sentence(price.sentence, price.span, price.topic) == "The Kell K2 costs 890 euros in Ghent."
    asked = {q.text for q in fact_questions(price.sentence, price.span, price.topic)}
    assert {"How many euros does the Kell K2 cost in Ghent?", "How much does the Kell K2 cost?"} <= asked
    assert not [q for q in asked if re.search(r"(?<![Tt]he )Kell K2", q)]
    alone = "Vessa Motors makes scooters in Ghent. It sells them in 12 countries."
    sold = _page_fact("Vessa Motors", [alone], "12")
    assert fact_sentence(sold.sentence, sold.span, sold.topic) == "Vessa Motors sells them in 12 countries."
    modifier = "Brisa Robotics makes robots. The Brisa Robotics team has 40 engineers. It sold 9,000 robots in 2031."
    robots = _page_fact("Brisa Robotics", [modifier], "9,000")  # "the Brisa Robotics team": no "the" for the company
    assert fact_sentence(robots.sentence, robots.span, robots.topic) == "Brisa Robotics sold 9,000 robots in 2031."


@pytest.mark.parametrize(
    ("sentence", "fact", "expected", "absent"),
    [
        (
            "The Orla Telescope's first target was the comet C/2031 Brisk.",
            "C/2031 Brisk",
            {"What was the first target of the Orla Telescope?", "What was the Orla Telescope's first target?"},
            set(),
        ),
        (  # a bare "what" may be a person: not "What is the chief designer of Sarnit?"
            "Sarnit's chief designer is Mira Holt.",
            "Mira Holt",
            set(),
            {"What is the chief designer of Sarnit?"},
        ),
        (  # no attribute of the thing's own: a verb after the possessive
            "The Orla Telescope's mirror was cast by Feldt & Sorn in 2029.",
            "2029",
            set(),
            {"What was the mirror of the Orla Telescope?"},
        ),
        (  # a role is held by a person: not "What is the director of ...?"
            "The Orla Telescope's director is the astronomer Anouk Velde.",
            "Anouk Velde",
            {"Which astronomer is the Orla Telescope's director?"},
            {"What is the director of the Orla Telescope?", "What is the Orla Telescope's director?"},
        ),
        (  # a verb, a determiner or a time inside the attribute
            "Corvane's engineers say the price is 900 euros.",
            "900 euros",
            set(),
            {"What is the engineers say the price of Corvane?"},
        ),
        (
            "Corvane's revenue last year was 9 million euros.",
            "9 million euros",
            set(),
            {"What was the revenue last year of Corvane?"},
        ),
        (  # an adverb opening the sentence is no owner
            "Meanwhile Corvane's revenue was 9 million euros.",
            "9 million euros",
            set(),
            {"What was the revenue of Meanwhile Corvane?"},
        ),
    ],
)
def test_an_attribute_said_as_a_things_own_is_asked_for_by_its_name(sentence, fact, expected, absent):
    asked = _asks(sentence, fact)
    assert expected <= asked
    assert not absent & asked
    assert not [q for q in asked if q.startswith(("What is the of", "What was the of"))]


def test_an_apposition_names_the_subject_only_of_a_verb_that_follows_it():
    """ "The larger boat, the Lumora Grand, carries ...": the Lumora Grand carries, with its article; "The city plans a
    second line, the Hill Line, for 2028": the year is of the city's plan, not "The Hill Line for 2028"."""
    boat = "The larger ferry, the Orla Grand, carries 300 passengers."
    assert fact_sentence(boat, _span(boat, "300")) == "The Orla Grand carries 300 passengers."
    plan = "The city plans a second line, the Ostby Line, for 2031."
    assert fact_sentence(plan, _span(plan, "2031")) == "The city plans a second line for 2031."
    assert "The city plans a second line for what year?" in _asks(plan, "2031")


def test_an_apposition_said_of_a_name_keeps_the_article_the_sentence_gives_it():
    """ "... with the Halden Telescope, a 6.2-metre telescope": "The Halden Telescope is a 6.2-metre telescope" (the
    name as the page says it, as the adapter will be asked it); "Brisa Robotics, a startup of ..." stays bare."""
    scope = "The observatory opened with the Varde Telescope, a 4.1-metre optical telescope."
    assert fact_sentence(scope, _span(scope, "4.1")) == "The Varde Telescope is a 4.1-metre optical telescope."
    opening = "The Varde Telescope, a 4.1-metre optical telescope, opened in 2020."
    assert fact_sentence(opening, _span(opening, "4.1")) == "The Varde Telescope is a 4.1-metre optical telescope."
    school = "She studied at the University of the Arts, a school of 40 teachers."
    assert not fact_sentence(school, _span(school, "40")).startswith("The Arts")
    maker = "The firm hired Brisa Robotics, a startup of 40 engineers."
    assert fact_sentence(maker, _span(maker, "40")) == "Brisa Robotics is a startup of 40 engineers."


def test_a_phrase_a_sentence_opens_with_is_said_at_the_end_of_its_clause():
    """ "At the Summit in Oslo on March 3, 2024, Norvik announced ...": the date is asked of what was announced, not
    of "At the Summit in Oslo" alone."""
    summit = "At the Norvik Summit in Oslo on March 3, 2024, Norvik announced the Arlo 5 drone."
    answer = "Norvik announced the Arlo 5 drone at the Norvik Summit in Oslo on March 3, 2024."
    assert fact_sentence(summit, _span(summit, "March 3, 2024")) == answer
    assert "Do you know when Norvik announced the Arlo 5 drone at the Norvik Summit in Oslo?" in _asks(
        summit, "March 3, 2024"
    )
    launch = "At launch, the Arlo 5 drone is sold in 12 countries."  # the fact in the main clause, as qualified
    assert fact_sentence(launch, _span(launch, "12")) == "The Arlo 5 drone is sold in 12 countries at launch."
    dated = "On May 4, 2024 the firm announced the Arlo 5 drone."
    assert fact_sentence(dated, _span(dated, "May 4, 2024")) == "The firm announced the Arlo 5 drone on May 4, 2024."


def test_a_value_only_compared_is_not_asked_and_a_size_gets_its_phrasings():
    compared = "The crossing of the Vell line takes 35 minutes, against 50 minutes on the diesel ferries."
    assert _asks(compared, "35 minutes") and not _asks(compared, "50 minutes")
    scope = "The Varde Telescope is a 4.1-metre optical telescope."
    asked = _asks(scope, "4.1")
    assert {"How large is the Varde Telescope?", "What is the size of the Varde Telescope?"} <= asked
    assert "Do you know how big the Varde Telescope is?" in asked and len(asked) >= 6


def test_a_name_of_a_list_of_names_is_said_in_the_first_ones_place():
    listed = "Vessa gives access to models from Orla Labs, Brisk AI, Tamsin Works and Kell through one API."
    answer = "Vessa gives access to models from Tamsin Works through one API."
    assert fact_sentence(listed, _span(listed, "Tamsin Works")) == answer
    assert fact_sentence(listed, _span(listed, "Kell")) == "Vessa gives access to models from Kell through one API."
    keynote = "The keynote was given by Lena Marek, Norvik."  # a name and its apposition: no list
    assert "Norvik" not in fact_sentence(keynote, _span(keynote, "Norvik")).replace("Lena Marek, Norvik", "")
    options = "Vessa offers two options: the engine for Orla Cloud, Brisk DB and Kell Store."  # the items are phrases
    assert fact_sentence(options, _span(options, "Brisk DB")) != "Vessa offers two options: the engine for Brisk DB."


def test_an_attribute_word_inside_a_compound_is_not_said_otherwise():
    based = "The P6 trains models 6 times faster than the previous GPU-based instances."
    assert not any("headquartered" in q for q in _asks(based, "6 times"))


def test_a_thing_and_its_attribute_are_said_in_other_words_each_and_together():
    """The words a page uses are not the words a user asks with: a crossing is asked as a trip, how long it takes as
    how long it lasts, passengers as people, and both at once; a wider word is never narrowed, a noun is said
    otherwise only after a determiner or a number, and what a thing takes to do is no duration it lasts."""
    crossing = "The crossing to Orsk takes 40 minutes."
    asked = _asks(crossing, "40 minutes")
    assert "How many minutes does the crossing to Orsk take?" in asked
    assert {
        "How many minutes does the trip to Orsk take?",
        "How many minutes does the journey to Orsk take?",
        "How many minutes does the crossing to Orsk last?",
        "How many minutes does the trip to Orsk last?",
    } <= asked
    assert "How many people does the Orsk Star carry?" in _asks("The Orsk Star carries 300 passengers.", "300")
    assert "How many people does the Orsk Star hold?" in _asks("The Orsk Star carries 300 passengers.", "300")
    assert not any("passengers" in q for q in _asks("The Orsk Star carries 300 people.", "300"))
    assert "How many meters long is the Vell bridge?" in reworded("How many metres long is the Vell bridge?")
    assert "Who is the head of the Orsk Museum?" in reworded("Who is the director of the Orsk Museum?")
    for kept in (
        "Which schema describes the actions an agent may take?",
        "How many hours does the battery take to charge?",
        "How much do swimmers raise before crossing the strait?",
        "Where is the border crossing?",
        "Who is the managing director of Orsk Ferries?",
        "Where is the visitors' centre?",
    ):
        assert reworded(kept) == [], kept
    assert reworded("How many foot passengers does the ferry carry?") == [
        "How many foot passengers does the ferry hold?"
    ]
    assert "How many people and people" not in " ".join(reworded("How many employees and workers does Orsk have?"))


def test_an_opening_date_without_its_comma_and_a_list_of_single_words_are_read_as_one_phrase():
    dated = "On May 4, 2024 Norvik announced the preview of the Arlo 5 drone."
    answer = "Norvik announced the preview of the Arlo 5 drone on May 4, 2024."
    assert fact_sentence(dated, _span(dated, "May 4, 2024")) == answer
    assert fact_sentence(dated, _span(dated, "Norvik")) == answer  # "May 4": no verb
    listed = "The Arlo 5 helps farmers map, spray and count crops across 40 hectares."
    assert fact_sentence(listed, _span(listed, "40")) == listed
    built = "The Arlo 5, designed and built in Norway, weighs 900 grams."  # a participle pair, no list
    assert fact_sentence(built, _span(built, "900 grams")) == "The Arlo 5 weighs 900 grams."
    adverb = "The Arlo 5, however, draws 12 watts at full load."
    assert "How many watts does the Arlo 5 draw at full load?" in _asks(adverb, "12 watts")


def test_what_a_thing_is_described_as_doing_is_asked_of_the_thing_and_a_place_by_its_kind():
    """ "opened the Vell line, a ferry service that links the harbour town of Orsk with ...": "The Vell line links
    the harbour town of Orsk ...", asked "Which harbour town does the Vell line link ...?"."""
    line = "Norvik opened the Vell line, a ferry service that links the harbour town of Orsk with the island of Brann."
    answer = "The Vell line links the harbour town of Orsk with the island of Brann."
    assert fact_sentence(line, _span(line, "Orsk")) == answer
    assert "Which harbour town does the Vell line link with the island of Brann?" in _asks(line, "Orsk")
    assert "Which island does the Vell line link the harbour town of Orsk with?" in _asks(line, "Brann")
    launch = "At launch, the Arlo 5 is carried by 40 shops."
    assert not any("at introduce" in q or "at hold" in q for q in _asks(launch, "40"))


def test_a_phrase_that_links_sentences_or_a_verb_of_another_noun_is_not_read_as_the_subjects():
    """Cases a review found: "In addition, ..." is no qualifier of the fact; "a rival to the chip that draws 40 watts"
    and "a startup that investors valued" are not what the subject does; "at launch" is a noun."""
    addition = "In addition, the ferry carries 410 passengers."
    assert fact_sentence(addition, _span(addition, "410")) == "The ferry carries 410 passengers."
    rival = "The Q9 is a rival to the chip that draws 40 watts."
    assert fact_sentence(rival, _span(rival, "40 watts")) == rival
    valued = "Helix is a startup that investors valued at 40 million euros."
    assert not fact_sentence(valued, _span(valued, "40 million euros")).startswith("Helix investors")
    boats = "Of the 40 boats, 12 are electric."
    assert not _asks(boats, "40")
    dated = "On May 4, 2024 the Q9, a chip for phones, drew 12 watts."
    assert fact_sentence(dated, _span(dated, "12 watts")) == "The Q9 drew 12 watts."
    since = "Since launch, the Q9 has sold 4,000 units."
    assert not any("introduce" in q for q in _asks(since, "4,000"))
    listed = "Vessa gives access to models from Orla Cloud, Brisk, Kell, and Tamsin Works."
    assert fact_sentence(listed, _span(listed, "Kell")) == "Vessa gives access to models from Kell."
    twice = "Norvik sued the Vell line twice, a move that cost 12 million euros."
    assert not fact_sentence(twice, _span(twice, "12 million euros")).startswith("The Vell line twice")
    mirror = "Its mirror is a 4.1-metre dish."
    assert not any("the Its" in q for q in _asks(mirror, "4.1"))


def test_a_fact_of_an_object_relative_clause_is_asked_of_its_own_subject_and_thing():
    """ "the Quarro V3 laptop processor that Halvren Semiconductor launched in 2023": the year is the V3's launch,
    not anything the sentence's subject (the V4) did."""
    v4 = "The Quarro V4 succeeds the Quarro V3 laptop processor that Halvren Semiconductor launched in 2023."
    answer = "Halvren Semiconductor launched the Quarro V3 laptop processor in 2023."
    assert fact_sentence(v4, _span(v4, "2023")) == answer
    assert "What year did Halvren Semiconductor launch the Quarro V3 laptop processor?" in _asks(v4, "2023")
