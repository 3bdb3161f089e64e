"""Write the two sample first-aid PDFs that stand in for the WHO/IFRC books in the sample profile.

Run: `python -m medset_dagster.sample_data.make_sample_pdfs [OUT_DIR]` (default: `sample_data/pdfs/`).

The text is original, plain first-aid guidance written for this project. Each PDF deliberately carries
the features the cleaner must handle in the real books: a running header (the document title) and footer
("Page N of M") on every text page, a word hyphenated across an explicit line break, and one image-only
page with no text. Output is byte-for-byte deterministic (fixed creation date, no random file id) so the
SHA-256 pinned in `core.pdf_corpus.SAMPLE_DOCUMENTS` holds on every run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from fpdf import FPDF

from medset_dagster.core.hashing import sha256_file
from medset_dagster.core.pdf_corpus import SAMPLE_DOCUMENTS, SAMPLE_PDF_DIR, DocumentSpec

# Fixed so the bytes (and hence the pinned SHA-256) never change between runs.
CREATION_DATE = datetime(2024, 1, 1, tzinfo=timezone.utc)
IMAGE_PAGE = "<image>"


@dataclass(frozen=True)
class Section:
    title: str
    paragraphs: tuple[str, ...]


# A Section titled IMAGE_PAGE becomes the image-only page.
IMAGE_ONLY = Section(IMAGE_PAGE, ())

INTRO_NOTE = (
    "These notes were written as sample data for testing a document pipeline. They summarise widely "
    "taught first-aid principles in plain words. They are not a substitute for first-aid training or "
    "for local protocols, and they do not replace professional medical care."
)

INJURIES = (
    Section(
        "About these notes",
        (
            "This booklet covers the first minutes after a serious injury, when help may be far away. "
            "Each section describes what to look for and what to do, in the order it matters.",
            INTRO_NOTE,
            "Always check that the scene is safe before you approach. A rescuer who becomes a casualty "
            "cannot help anyone. Wear gloves if you have them, and ask others to call for help early.",
        ),
    ),
    Section(
        "Airway and breathing basics",
        (
            "Check whether the person responds. Speak loudly and tap the shoulders. If there is no "
            "response, open the airway: place one hand on the forehead, tilt the head back gently and "
            "lift the chin with two fingers.",
            "Look, listen and feel for normal breathing for no more than ten seconds. Occasional gasps "
            "are not normal breathing. If the person is not breathing normally, call for help and start "
            "chest compressions: push hard and fast in the centre of the chest, about 100 to 120 times "
            "a minute, letting the chest rise fully between pushes.",
            "If the person is breathing but does not respond, turn them onto their side in the recovery "
            "position so that vomit or blood can drain from the mouth. Keep checking that breathing "
            "continues until help arrives.",
            "A person who is choking but can cough should be encouraged to keep coughing. If they cannot "
            "cough, speak or breathe, give up to five firm back blows between the shoulder blades, then "
            "up to five abdominal thrusts, and repeat.",
        ),
    ),
    Section(
        "Severe bleeding",
        (
            "Severe bleeding can kill within minutes, so stop it before anything else except a blocked "
            "airway. Blood that spurts, pools quickly or soaks through clothing is severe.",
            "Press firmly and directly on the wound with a clean pad, cloth or your gloved hand. Keep "
            "pressing without lifting to look. If blood soaks through, add more cloth on top and press "
            "harder. Firm pressure held for at least ten minutes controls most haemor-\nrhage from "
            "limbs.",
            "For life-threatening bleeding from an arm or leg that pressure cannot control, apply a "
            "tourniquet high on the limb, above the wound, and tighten it until the bleeding stops. "
            "Note the time it was applied and do not loosen it. Deep wounds in the neck, armpit or groin "
            "can be packed tightly with cloth and then pressed.",
            "Lay the person down, keep them warm and watch for signs of shock.",
        ),
    ),
    Section(
        "Open wounds",
        (
            "An open wound is any break in the skin. Once bleeding is controlled, the aim is to prevent "
            "infection. Rinse the wound with plenty of clean running water for several minutes. Drinking "
            "water that is safe to drink is clean enough.",
            "Remove loose dirt, but do not dig for deeply embedded objects. If an object is stuck in the "
            "wound, leave it in place and pad around it so that it cannot move.",
            "Cover the wound with a clean dressing and bandage it firmly but not so tightly that the "
            "fingers or toes beyond it turn pale, cold or numb.",
            "Watch the wound over the following days. Increasing pain, swelling, redness, warmth, pus or "
            "fever are signs of infection and need medical care. Bites, deep puncture wounds and dirty "
            "wounds carry a higher risk of tetanus.",
        ),
    ),
    IMAGE_ONLY,
    Section(
        "Fractures",
        (
            "Suspect a broken bone when there is pain, swelling, deformity, a grating feeling or an "
            "inability to use the limb after a fall or blow. An open fracture has a wound over it, and "
            "bone may be visible.",
            "Keep the injured part still in the position you found it. Support it with padding and, if "
            "the person must be moved, splint it: use a rigid object such as a board or rolled magazine, "
            "padded and tied above and below the injury. Check the circulation beyond the splint after "
            "tying it.",
            "Cover any wound of an open fracture with a clean dressing, without pushing bone back in. "
            "Do not try to straighten a badly bent limb unless there is no pulse beyond the injury and "
            "help is many hours away.",
            "A suspected injury to the neck or back needs the head held still in line with the body. "
            "Move the person only if they are in danger where they lie.",
        ),
    ),
    Section(
        "Crush injuries",
        (
            "A crush injury happens when a heavy weight, such as rubble or a vehicle, presses on part of "
            "the body. Muscle damaged by prolonged crushing can release harmful substances into the blood "
            "when the weight is removed.",
            "If the person has been trapped for only a short time, remove the weight as soon as it is "
            "safe to do so. If they have been trapped for a long time, get skilled help if at all "
            "possible before release, and be ready for sudden collapse afterwards.",
            "After release, control any bleeding, treat fractures and keep the person warm and lying "
            "down. Give sips of water only if they are fully awake and medical help is far away. Dark "
            "urine or very little urine in the following days is a warning sign that needs hospital care.",
        ),
    ),
    Section(
        "Shock",
        (
            "Shock means that the organs are not getting enough blood. It often follows severe bleeding, "
            "burns or crush injuries. Signs include pale, cold and clammy skin, a fast weak pulse, fast "
            "breathing, thirst, anxiety and confusion.",
            "Treat the cause first: stop any bleeding. Lay the person down and, if there is no injury to "
            "the legs or spine, raise the legs a little. Keep them warm with a blanket above and below, "
            "and loosen tight clothing.",
            "Do not give food or drink, because surgery may be needed. Stay with the person, reassure "
            "them, and check breathing and response regularly until help arrives.",
        ),
    ),
)

ENVIRONMENT = (
    Section(
        "About these notes",
        (
            "This booklet covers burns, bites and poisoning, and how to give care when there are no "
            "medical supplies. Each section describes what to look for and what to do.",
            INTRO_NOTE,
            "Make sure the scene is safe first: put out flames, move away from smoke, and keep clear of "
            "the animal or plant that caused the harm.",
        ),
    ),
    Section(
        "Serious burns",
        (
            "Stop the burning: smother flames, remove the person from the heat and take off jewellery "
            "and clothing near the burn unless it is stuck to the skin.",
            "Cool the burn with cool clean running water for at least twenty minutes, as soon as "
            "possible. Do not use ice, butter, oil or toothpaste. Keep the rest of the body warm, because "
            "large burns cause a dangerous loss of heat.",
            "Cover the burn loosely with cling film or a clean, non-fluffy cloth. Do not burst blisters. "
            "A burn larger than the person's hand, a deep burn, or a burn to the face, hands, feet, "
            "genitals or airway needs medical care. Soot around the mouth or a hoarse voice after a fire "
            "suggests an airway burn, which can quickly block breath-\ning.",
            "For chemical burns, brush off any powder and rinse with large amounts of water. For "
            "electrical burns, switch off the power before touching the person.",
        ),
    ),
    Section(
        "Animal bites",
        (
            "Any animal bite can become infected, and bites from mammals can spread rabies. Wash the "
            "wound straight away with soap and plenty of running water for about fifteen minutes.",
            "Control bleeding with pressure and cover the wound with a clean dressing. Seek medical care "
            "for all but minor bites, and urgently for any bite from a dog, bat, monkey or other animal "
            "that could carry rabies; vaccination after a bite prevents the disease.",
            "For a snake bite, keep the person calm and still, remove rings and tight items from the "
            "bitten limb, and keep the limb at rest. Do not cut the wound, suck out venom or apply ice. "
            "Carry the person rather than let them walk, and get them to medical care quickly.",
        ),
    ),
    IMAGE_ONLY,
    Section(
        "Poisonous plants",
        (
            "Some plants cause harm when eaten, and others irritate the skin on contact. Children are the "
            "most likely to eat berries, leaves or seeds.",
            "If a plant has been eaten, remove any remaining pieces from the mouth and rinse it with "
            "water. Do not make the person vomit. Keep a sample or photograph of the plant to show to a "
            "health worker or poison centre.",
            "If the skin touched an irritant plant, wash it with soap and water and wash the clothing. "
            "Get urgent help for vomiting, drowsiness, a racing or slow heartbeat, breathing difficulty "
            "or fits.",
        ),
    ),
    Section(
        "Poisonous mushrooms",
        (
            "Many poisonous mushrooms look like edible ones, and cooking does not make them safe. Some of "
            "the most dangerous cause no symptoms for six hours or more, and then severe vomiting, "
            "diarrhoea and liver damage.",
            "Anyone who may have eaten a poisonous mushroom needs medical assessment, even if they feel "
            "well. Keep any leftover mushrooms, or a photograph of them, to help identify the species.",
            "While waiting for help, give small sips of water if the person is awake and vomiting, and "
            "place them on their side if they become drowsy. Do not give salt water or make them vomit.",
        ),
    ),
    Section(
        "Improvised care without supplies",
        (
            "When there is no first-aid kit, everyday objects can do the same job. A clean T-shirt, "
            "towel or sanitary pad makes a pressure pad. A belt, scarf or strip of cloth twisted with a "
            "stick can serve as a tourniquet for life-threatening limb bleeding.",
            "Splints can be made from boards, branches, rolled newspapers or a sleeping mat, padded with "
            "clothing. An injured arm can be supported by pinning the sleeve to the front of a shirt. An "
            "injured leg can be tied to the other leg.",
            "A blanket or coat and two poles make a stretcher. Plastic bags or sheets can cover burns or "
            "protect a wound from dirt. Water that is safe to drink can be used to rinse wounds; boiling "
            "and cooling water makes it safe.",
        ),
    ),
)

CONTENT: dict[str, tuple[Section, ...]] = {
    "sample_field_injuries": INJURIES,
    "sample_field_environment": ENVIRONMENT,
}


class _Booklet(FPDF):
    """An FPDF with the running header and footer on every page except image-only pages."""

    def __init__(self, title: str) -> None:
        super().__init__(format="A4")
        self.doc_title = title
        self.image_pages: set[int] = set()

    def header(self) -> None:
        if self.page_no() in self.image_pages:
            return
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 8, self.doc_title, align="C", new_x="LMARGIN", new_y="NEXT")
        self.ln(4)

    def footer(self) -> None:
        if self.page_no() in self.image_pages:
            return
        self.set_y(-15)
        self.set_font("Helvetica", "I", 9)
        self.cell(0, 8, f"Page {self.page_no()} of {{nb}}", align="C")


def _draw_first_aid_sign(pdf: FPDF) -> None:
    """A first-aid cross in a rounded frame: vector shapes only, so the page has no extractable text."""
    pdf.set_line_width(1.5)
    pdf.set_draw_color(60, 60, 60)
    pdf.rect(45, 80, 120, 120, style="D", round_corners=True, corner_radius=10)
    pdf.set_fill_color(0, 128, 70)
    pdf.rect(90, 100, 30, 80, style="F")
    pdf.rect(65, 125, 80, 30, style="F")


def _write_section(pdf: _Booklet, section: Section) -> None:
    if section.title == IMAGE_PAGE:
        # Marked before add_page(), which is what calls header().
        pdf.image_pages.add(pdf.page_no() + 1)
        pdf.add_page()
        _draw_first_aid_sign(pdf)
        return
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 15)
    pdf.multi_cell(0, 9, section.title, new_x="LMARGIN", new_y="NEXT")
    pdf.ln(3)
    pdf.set_font("Helvetica", "", 11)
    for paragraph in section.paragraphs:
        # Explicit "\n" in a paragraph forces a line break (used for the hyphenated words).
        pdf.multi_cell(0, 6, paragraph, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(4)


def build_pdf(spec: DocumentSpec, sections: tuple[Section, ...]) -> bytes:
    """The PDF bytes for one sample document."""
    pdf = _Booklet(spec.title)
    pdf.set_creation_date(CREATION_DATE)
    pdf.set_title(spec.title)
    pdf.set_author("medset_dagster sample data")
    pdf.set_lang("en")
    pdf.set_auto_page_break(auto=True, margin=20)
    for section in sections:
        _write_section(pdf, section)
    return bytes(pdf.output())


def write_sample_pdfs(out_dir: Path = SAMPLE_PDF_DIR) -> dict[str, Path]:
    """Write every sample PDF into `out_dir`; returns doc_id -> path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    for spec in SAMPLE_DOCUMENTS:
        path = out_dir / spec.filename
        path.write_bytes(build_pdf(spec, CONTENT[spec.doc_id]))
        written[spec.doc_id] = path
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    out_dir = Path(args[0]) if args else SAMPLE_PDF_DIR
    pins = {spec.doc_id: spec.sha256 for spec in SAMPLE_DOCUMENTS}
    stale = False
    for doc_id, path in write_sample_pdfs(out_dir).items():
        actual = sha256_file(path)
        status = "ok" if actual == pins[doc_id] else "DIFFERS FROM PIN"
        stale |= actual != pins[doc_id]
        print(f"{path}  sha256={actual}  {status}")
    # A differing hash means the content (or fpdf2) changed: update SAMPLE_DOCUMENTS deliberately.
    return 1 if stale else 0


if __name__ == "__main__":
    raise SystemExit(main())
