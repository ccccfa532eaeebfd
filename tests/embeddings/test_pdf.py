"""embeddings/pdf.py: text, pages and reading order from made PDF files (tests/made_files.py),
and the layout rules on hand-made lines and blocks."""

from __future__ import annotations

import pytest

import made_files as made
from embeddings import pdf
from embeddings.pdf import Block, Line

pytestmark = pytest.mark.quick  # model-free (conftest.py refuses to load one)


@pytest.fixture(scope="module")
def report() -> pdf.PdfText:
    return pdf.extract(made.harbour_report())


def test_running_header_and_page_numbers_are_left_out(report):
    assert made.HEADER not in report.text
    assert all(line.strip() not in {"1", "2", "3", "4"} for line in report.text.split("\n"))


def test_line_ends_stay_verbatim_hyphens_included(report):
    assert "traffic infor-\nmation every month" in report.text


def test_two_columns_drawn_across_the_page_are_read_column_by_column(report):
    left, right = "\n".join(made.LEFT), "\n".join(made.RIGHT)
    assert left in report.text and right in report.text
    assert report.text.index(left) < report.text.index(right)


def test_a_paragraph_runs_on_into_the_next_page(report):
    run_on = "\n".join(made.PAGE1_RUN_ON + made.PAGE2_RUN_ON)
    assert run_on in report.text  # one paragraph: joined by a newline, not a blank line


def test_a_table_is_one_paragraph_of_rows(report):
    rows = "\n".join(" | ".join(row) for row in made.TABLE)
    assert f"{made.TABLE_CAPTION}\n\n{rows}" in report.text


def test_pages_start_where_their_text_starts(report):
    assert len(report.pages) == 4
    assert report.pages[0] == 0 and report.text.startswith("The year in review")
    # page 2 starts with the end of the paragraph that began on page 1
    assert report.text[report.pages[1]:].startswith(made.PAGE2_RUN_ON[0])
    assert report.text[report.pages[2]:].startswith(made.TABLE_CAPTION)
    assert report.pages[3] == len(report.text)  # the scanned page holds no text
    assert report.empty_pages == (4,)


def test_title_comes_from_the_document_information(report):
    assert report.title == "Harbour Authority Annual Report 2025"


def test_a_scan_without_text_layer_is_unreadable():
    with pytest.raises(pdf.Unreadable, match="no text layer"):
        pdf.extract(made.scanned_pdf())


def test_an_encrypted_file_is_unreadable():
    with pytest.raises(pdf.Unreadable, match="encrypted"):
        pdf.extract(made.encrypted_pdf())


@pytest.mark.parametrize("data", [b"%PDF-1.4\n garbage", b"not a pdf at all",
                                  made.harbour_report()[:900]])
def test_a_damaged_file_is_unreadable(data):
    with pytest.raises(pdf.Unreadable):
        pdf.extract(data)


# --- the rules, on hand-made lines and blocks ------------------------------------------


def _line(text, y, x0=50.0, x1=300.0):
    return Line(text, x0, x1, y, y + 10)


def test_running_lines_repeat_in_the_margin_on_half_the_pages():
    height = 800.0
    pages = [([[_line(f"Report 2025 - page {n}", 780)], [_line("body", 400)]], 600.0, height)
             for n in range(1, 4)]
    pages.append(([[_line("body", 400)]], 600.0, height))
    assert pdf.running_lines(pages) == {"report # - page #"}
    assert pdf.running_lines(pages[:1]) == set()  # one page: nothing repeats


def _block(top, x0=50.0, x1=280.0, lines=("x",), bottom=None, cells=1, full=False):
    return Block(tuple(lines), x0, x1, top, top - 10 if bottom is None else bottom, 10.0,
                 cells=cells, full=full)


def test_reading_order_bands_and_columns():
    title = _block(800, x0=50, x1=550, lines=("Title",))
    left_a, left_b = _block(700, lines=("L1",)), _block(600, lines=("L2",))
    right_a, right_b = _block(700, x0=320, x1=550, lines=("R1",)), _block(650, x0=320,
                                                                          x1=550, lines=("R2",))
    wide = _block(500, x0=50, x1=550, lines=("Wide",))
    below = _block(400, lines=("After",))
    order = pdf.reading_order([below, right_b, left_b, wide, right_a, title, left_a], 600)
    assert [b.text for b in order] == ["Title", "L1", "L2", "R1", "R2", "Wide", "After"]


def test_joiner():
    above = _block(700, bottom=690, lines=("The first line of a paragraph",))
    close = _block(686, lines=("and its second line.",))   # 4 points below: same paragraph
    apart = _block(670, lines=("A new paragraph.",))       # 20 points below: a blank line
    assert pdf.joiner(above, close, same_page=True) == "\n"
    assert pdf.joiner(above, apart, same_page=True) == "\n\n"
    # across a page: runs on when the sentence is not over and the next starts in lower
    # case, or the last line ran to the column's edge
    ended = _block(100, lines=("It ended.",), full=True)
    open_ = _block(100, lines=("It goes on",))
    full = _block(100, lines=("It goes on",), full=True)
    upper = _block(700, lines=("Paris and",))
    lower = _block(700, lines=("on and on",))
    assert pdf.joiner(open_, lower, same_page=False) == "\n"
    assert pdf.joiner(open_, upper, same_page=False) == "\n\n"
    assert pdf.joiner(full, upper, same_page=False) == "\n"
    assert pdf.joiner(ended, lower, same_page=False) == "\n\n"
    rows = _block(700, cells=3), _block(680, cells=3)
    assert pdf.joiner(*rows, same_page=True) == "\n"
    assert pdf.joiner(None, upper, same_page=False) == "\n\n"


def test_short_lines_on_one_baseline_are_a_table_row_when_rows_align():
    def row(y, *cells):
        return [[Line(text, x, x + 30, y, y + 10)] for x, text in cells]

    table = row(500, (50, "Grain"), (170, "4.1"), (290, "3.8")) + row(
        482, (50, "Oil"), (170, "12.0"), (290, "11.2"))
    long_lines = [[Line("a line of the left column, long", 50, 280, 400, 410)],
                  [Line("a line of the right column, long", 320, 550, 400, 410)]]
    headings = row(300, (50, "Methods"), (320, "Results"))  # side by side, no rows around
    blocks = pdf._rows(table + long_lines + headings, width=600)
    assert sorted((b.text, b.cells) for b in blocks) == [
        ("Grain | 4.1 | 3.8", 3), ("Methods", 1), ("Oil | 12.0 | 11.2", 3), ("Results", 1),
        ("a line of the left column, long", 1), ("a line of the right column, long", 1)]


def test_a_table_row_at_the_top_of_every_page_is_not_a_running_header():
    from fpdf import FPDF

    doc = FPDF(unit="pt", format="A4")
    doc.set_auto_page_break(False)
    n = 0
    for _ in range(3):
        doc.add_page()
        doc.set_font("Helvetica", size=10)
        doc.set_xy(57, 57)  # a 2 cm margin: the first row stands in the top 9%
        for _ in range(40):
            n += 1
            for cell in (f"Ship {n}", f"{n * 1.5:.1f}"):
                doc.cell(120, 18, cell, border=1)
            doc.set_xy(57, doc.get_y() + 18)
    text = pdf.extract(bytes(doc.output())).text
    assert all(f"Ship {i} | {i * 1.5:.1f}" in text for i in range(1, 121))
