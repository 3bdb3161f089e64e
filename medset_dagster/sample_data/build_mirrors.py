"""Write the sample-profile local mirrors of the 9 Hub source datasets.

Run: `python -m medset_dagster.sample_data.build_mirrors [--no-check]`

Each mirror lives in `sample_data/hub/<owner>/<name>/` and copies its Hub repo's file names, formats,
column names and (for medical-o1-reasoning-SFT) the README `configs:` block, so that the pipeline's
`datasets.load_dataset(<folder>, name=..., split="train", ...)` call works unchanged in the sample
profile. All rows are original text written for this project (nothing is copied from the real
datasets); URLs in the medicationqa mirror are placeholders under example.org.

Every mirror deliberately carries the bad rows its mapper must handle (nulls, empty and blank strings,
padding, duplicates, over-long and very short text, a number in a CSV text column). Each bad row is
declared where it is added, with the rule expected to catch it; `hub/README.md` is generated from those
declarations, and `expected_fates` re-derives every row's fate from the rules in
`shared/reference/sources.md` (drop-reason names as in `core/mappers.py`) and fails the build if a
declaration disagrees.

Output is deterministic: JSON with fixed formatting, CSV with "\\n" line ends, Parquet written by
pyarrow with fixed settings and no pandas metadata; no timestamps anywhere. After writing, every mirror
is loaded with `datasets` (offline, throw-away cache) and its rows and columns are printed.

Loader facts (datasets 5.2.0) that shaped the data, see `hub/README.md`:
- A JSON/JSON-lines column holding a number among strings, or objects whose keys differ between rows
  (e.g. medqa `options` with and without an `E` key), still loads, but as a `Json` feature: polars
  then sees JSON text (`"a"` with its quotes) for every row of that column. Such rows would spoil the
  whole column, so the JSON mirrors carry no wrong-type values and every medqa row has keys A to E (a
  4-option question has `"E": null`).
- `first_aid1.json` (loaded with `field="intents"`) is refused outright when a list mixes numbers and
  strings, or when `tag` mixes types.
- CSV: a number in a text column loads as its string form; an empty cell, quoted or not, loads as null.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HUB = Path(__file__).resolve().parent / "hub"
MIN_CHARS, MAX_CHARS = 10, 1500  # the card's length bounds on input and output


# --------------------------------------------------------------------------------------------------
# Row collection with declared defects
# --------------------------------------------------------------------------------------------------


@dataclass
class Bad:
    """A deliberate defect: what is wrong and the fate the pipeline's rules give the row.

    fate: `kept` (survives: stripping fixes it, or no rule catches it), a mapper drop reason
    (`missing_answer`, ...), `duplicate_<field>` (per-source dedup), `card_global_dedup` or
    `card_length` (only under the card policy). `note` says how the rules reach that fate.
    """

    columns: str
    defect: str
    fate: str
    note: str = ""


@dataclass
class Mirror:
    source_id: str
    repo: str
    rows: list[dict[str, Any]] = field(default_factory=list)
    bad: dict[int, Bad] = field(default_factory=dict)

    def add(self, row: dict[str, Any], bad: Bad | None = None) -> None:
        if bad is not None:
            self.bad[len(self.rows)] = bad
        self.rows.append(row)

    @property
    def folder(self) -> Path:
        return HUB / self.repo


def long_text(*parts: str) -> str:
    return " ".join(parts)


# --------------------------------------------------------------------------------------------------
# 1. FreedomIntelligence/medical-o1-verifiable-problem
# --------------------------------------------------------------------------------------------------

OQ, GA = "Open-ended Verifiable Question", "Ground-True Answer"

O1_VERIFIABLE_GOOD = [
    ("A 58-year-old man with a long history of heavy alcohol use presents with confusion, an unsteady broad-based gait and horizontal nystagmus. Which vitamin deficiency is most likely responsible for his presentation?",
     "Thiamine (vitamin B1) deficiency"),
    ("A 24-year-old woman presents with heat intolerance, weight loss despite an increased appetite, a diffuse non-tender goitre and bilateral proptosis. What is the most likely underlying diagnosis?",
     "Graves disease"),
    ("A 6-year-old boy develops periorbital swelling, cola-coloured urine and high blood pressure two weeks after a sore throat. Which serum complement finding is expected?",
     "Low C3 (hypocomplementaemia)"),
    ("A 67-year-old smoker has a central lung mass and a serum sodium of 121 mmol/L with inappropriately concentrated urine. What is the most likely histological type of the tumour?",
     "Small cell lung carcinoma"),
    ("A 30-year-old woman taking lithium for bipolar disorder develops polyuria and polydipsia. Her urine osmolality does not rise after desmopressin is given. What is the diagnosis?",
     "Nephrogenic diabetes insipidus"),
    ("A 45-year-old man has crushing retrosternal chest pain and ST elevation in leads II, III and aVF. Which coronary artery is most likely occluded?",
     "Right coronary artery"),
    ("A newborn has bilious vomiting on the first day of life, and an abdominal radiograph shows a 'double bubble' sign. Which chromosomal abnormality is most commonly associated with this finding?",
     "Trisomy 21 (Down syndrome)"),
    ("A 72-year-old woman taking warfarin for atrial fibrillation has an INR of 9.5 and active gastrointestinal bleeding. Besides stopping warfarin, what should be given to reverse the anticoagulation most rapidly?",
     "Four-factor prothrombin complex concentrate with intravenous vitamin K"),
    ("A 19-year-old college student has fever, headache, neck stiffness and a non-blanching petechial rash on the trunk and legs. Which organism is the most likely cause?",
     "Neisseria meningitidis"),
    ("A 50-year-old woman has fatigue, itching and a raised alkaline phosphatase. Antimitochondrial antibodies are positive. What is the most likely diagnosis?",
     "Primary biliary cholangitis"),
    ("A 65-year-old man develops sudden painless loss of vision in one eye; fundoscopy shows a pale retina with a cherry-red spot at the macula. What is the most likely diagnosis?",
     "Central retinal artery occlusion"),
    ("A patient with type 1 diabetes presents with vomiting, deep sighing respirations, a glucose of 28 mmol/L and ketonuria. After fluids and insulin are started, which electrolyte must be monitored closely because it falls during treatment?",
     "Serum potassium"),
    ("A 28-year-old woman at 34 weeks of gestation has a blood pressure of 165/110 mmHg, proteinuria and a generalised tonic-clonic seizure. Which drug is first-line to prevent further seizures?",
     "Magnesium sulfate"),
    ("A 60-year-old man has a resting tremor of the right hand, slowness of movement and cogwheel rigidity. Degeneration of which brain structure underlies this condition?",
     "Substantia nigra pars compacta"),
    ("A 40-year-old woman has episodes of headache, palpitations and sweating, with a blood pressure of 210/120 mmHg during an attack. Which drug class must be started before a beta-blocker when preparing her for surgery?",
     "Alpha-adrenergic blocker such as phenoxybenzamine"),
]

O1_VERIFIABLE_LONG_QUESTION = long_text(
    "A 54-year-old man is brought to the emergency department by his wife because of increasing confusion over the past three days.",
    "She reports that he has had a poor appetite, nausea and generalised weakness for about two weeks, and that he has been drinking large volumes of water because he feels constantly thirsty.",
    "He has hypertension treated with hydrochlorothiazide and was diagnosed six months ago with squamous cell carcinoma of the right lung, for which he completed chemotherapy and radiotherapy.",
    "He smoked 30 cigarettes a day for 35 years and stopped at the time of diagnosis; he rarely drinks alcohol.",
    "On examination he is drowsy but rousable and oriented to person only, with dry mucous membranes and reduced skin turgor.",
    "His temperature is 36.9 C, pulse 104/min, blood pressure 102/64 mmHg and respiratory rate 18/min.",
    "There is no focal neurological deficit, and breath sounds are reduced at the right base.",
    "An electrocardiogram shows a shortened QT interval.",
    "Laboratory studies show haemoglobin 12.1 g/dL, white cell count 8.2 x 10^9/L, sodium 146 mmol/L, potassium 3.6 mmol/L, urea 14.8 mmol/L, creatinine 168 umol/L, corrected calcium 3.62 mmol/L, phosphate 0.68 mmol/L, albumin 33 g/L and alkaline phosphatase 110 U/L.",
    "Parathyroid hormone is suppressed at 0.4 pmol/L and 25-hydroxyvitamin D is within the normal range.",
    "A chest radiograph shows a right hilar mass without obvious bone lesions, and a bone scan performed last month was unremarkable.",
    "His hydrochlorothiazide is stopped and intravenous saline is started.",
    "Which circulating mediator, released by the tumour, is most likely responsible for this patient's electrolyte abnormality?",
)


def build_o1_verifiable() -> Mirror:
    m = Mirror("medical_o1_verifiable_problem", "FreedomIntelligence/medical-o1-verifiable-problem")
    for q, a in O1_VERIFIABLE_GOOD:
        m.add({OQ: q, GA: a})
    q1, a1 = O1_VERIFIABLE_GOOD[1]
    q5, _ = O1_VERIFIABLE_GOOD[5]
    q9, a9 = O1_VERIFIABLE_GOOD[9]
    m.add({OQ: q1, GA: a1}, Bad(OQ + ", " + GA, "exact duplicate of row 1", "duplicate_input"))
    m.add({OQ: q5, GA: "Left anterior descending artery"},
          Bad(OQ, "same question as row 5, different answer", "duplicate_input", "dedup keeps the first occurrence (row 5)"))
    m.add({OQ: q9.upper().replace(". ", ".  "), GA: a9.lower()},
          Bad(OQ + ", " + GA, "row 9 in upper case with doubled spaces, answer in lower case",
              "card_global_dedup", "differs from row 9 byte-wise, so the exact per-source dedup keeps it; the card's normalised (input, output) dedup drops it"))
    m.add({OQ: "  A 33-year-old woman has fatigue, weight gain, cold intolerance and a firm painless goitre; anti-thyroid peroxidase antibodies are strongly positive. What is the most likely diagnosis?\n",
           GA: " Hashimoto thyroiditis  "},
          Bad(OQ + ", " + GA, "leading/trailing whitespace (spaces, newline)", "kept", "stripping fixes it"))
    m.add({OQ: "", GA: "Acute appendicitis"}, Bad(OQ, "empty string", "missing_question"))
    m.add({OQ: "   \t  ", GA: "Iron deficiency anaemia"}, Bad(OQ, "whitespace only", "missing_question"))
    m.add({OQ: "A 26-year-old man has recurrent episodes of painless haematuria one or two days after upper respiratory tract infections. What is the most likely diagnosis?", GA: None},
          Bad(GA, "null", "missing_answer"))
    m.add({OQ: "A 35-year-old woman has a malar rash, photosensitivity, joint pains and mouth ulcers. Which antibody is most specific for her likely diagnosis?", GA: ""},
          Bad(GA, "empty string", "missing_answer"))
    m.add({OQ: O1_VERIFIABLE_LONG_QUESTION, GA: "Parathyroid hormone-related peptide (PTHrP)"},
          Bad(OQ, f"over-long question ({len(O1_VERIFIABLE_LONG_QUESTION)} chars)", "card_length"))
    m.add({OQ: "Define MI", GA: "Death of heart muscle caused by prolonged ischaemia"},
          Bad(OQ, "very short question (9 chars)", "card_length"))
    m.add({OQ: "A 70-year-old vegan man has a macrocytic anaemia, loss of vibration sense in both feet and a positive Romberg test. Which vitamin is deficient?", GA: "B12"},
          Bad(GA, "very short answer (3 chars)", "card_length"))
    return m


# --------------------------------------------------------------------------------------------------
# 2. FreedomIntelligence/medical-o1-reasoning-SFT (configs en, zh, en_mix, zh_mix)
# --------------------------------------------------------------------------------------------------

REASONING_EN_GOOD = [
    ("A 34-year-old woman presents with fatigue, pallor and spoon-shaped nails. She reports heavy menstrual periods for the past year. What pattern would you expect on her iron studies?",
     "Okay, she has fatigue and pallor, which points towards anaemia. Spoon-shaped nails, koilonychia, are a classic sign of long-standing iron deficiency. Heavy periods give a clear source of chronic blood loss, so iron deficiency is the most likely cause. When iron is lost, the stores are used up first, so ferritin falls. The liver makes more transferrin to capture whatever iron is around, so the total iron-binding capacity goes up. Serum iron is low and transferrin saturation drops. This separates it from anaemia of chronic disease, where ferritin is normal or high and the binding capacity is low.",
     "Her iron studies should show iron deficiency: low serum ferritin, low serum iron, a raised total iron-binding capacity and low transferrin saturation. The blood film would typically show a microcytic, hypochromic anaemia. The heavy menstrual bleeding is the likely cause and should be assessed alongside iron replacement."),
    ("A 68-year-old man with atrial fibrillation suddenly develops severe abdominal pain, yet his abdomen is soft and only mildly tender on examination. What is the most likely diagnosis?",
     "Alright, the key phrase is pain out of proportion to the examination. He has atrial fibrillation and it is not clear he is anticoagulated, so a clot from the left atrium could travel to the gut. The superior mesenteric artery takes off at a shallow angle and is a common place for an embolus to lodge. Early on, the bowel is ischaemic but not yet infarcted, so the peritoneum is not irritated and the abdomen stays soft. Later there may be bloody stools, a raised lactate and peritonitis. Pancreatitis or a perforated ulcer would usually give more findings on examination.",
     "The most likely diagnosis is acute mesenteric ischaemia from an embolus to the superior mesenteric artery, given the atrial fibrillation and pain out of proportion to the examination. He needs urgent CT angiography, fluid resuscitation, anticoagulation and early surgical or endovascular assessment."),
    ("A 2-year-old child has a barking cough, inspiratory stridor and a low-grade fever after two days of a runny nose. What is the most likely diagnosis and the first-line treatment?",
     "A barking, seal-like cough with stridor in a young child after a cold is the typical picture of croup. It is usually caused by parainfluenza virus, which makes the larynx and trachea swell just below the vocal cords. The low-grade fever and gradual onset fit a viral illness rather than epiglottitis, which comes on fast with high fever, drooling and a toxic-looking child. Treatment aims to reduce the airway swelling. A single dose of oral dexamethasone helps in mild, moderate and severe cases, and nebulised adrenaline is added when there is stridor at rest or distress.",
     "This is croup (laryngotracheobronchitis), most often caused by parainfluenza virus. First-line treatment is a single dose of oral dexamethasone; nebulised adrenaline is added for moderate to severe cases with stridor at rest, along with observation and oxygen if needed."),
    ("A 55-year-old woman taking an SSRI is started on tramadol and develops agitation, sweating, tremor, brisk reflexes and inducible clonus. What is happening?",
     "She is on an SSRI and has just started tramadol, which also increases serotonin activity. The symptoms group into three areas: mental state change with agitation, autonomic overactivity with sweating, and neuromuscular excitability with tremor, hyperreflexia and clonus. Clonus, especially in the legs, is the most useful sign for serotonin toxicity. Neuroleptic malignant syndrome comes on more slowly with lead-pipe rigidity and slow reflexes, and she is not on an antipsychotic. Anticholinergic toxicity would give dry skin, not sweating.",
     "She has serotonin syndrome caused by combining tramadol with an SSRI. Both drugs should be stopped, and she needs supportive care with cooling and benzodiazepines for agitation; cyproheptadine can be considered in moderate cases, and severe hyperthermia needs intensive care."),
    ("A 25-year-old man collapses while playing basketball. His father died suddenly at the age of 40. Echocardiography shows asymmetric thickening of the interventricular septum. What is the most likely diagnosis?",
     "A young athlete collapsing during exertion with a family history of sudden death makes me think of an inherited heart condition. The echo finding of asymmetric septal thickening is the hallmark of hypertrophic cardiomyopathy. It is usually inherited in an autosomal dominant way through mutations in sarcomere proteins such as beta-myosin heavy chain. During exercise, the thick septum and the mitral valve can block the outflow tract, and the abnormal muscle can trigger ventricular arrhythmias.",
     "The most likely diagnosis is hypertrophic cardiomyopathy, an autosomal dominant condition and a leading cause of sudden cardiac death in young athletes. He needs cardiology assessment, risk stratification for an implantable defibrillator, advice about competitive sport and screening of first-degree relatives."),
    ("A 45-year-old woman has right upper quadrant pain, a high fever with rigors and yellowing of her skin. What is the most likely diagnosis?",
     "Pain in the right upper quadrant, fever and jaundice together form Charcot's triad. That suggests an infection in the bile ducts, usually because a gallstone is blocking the common bile duct and bile becomes infected by gut bacteria. Simple biliary colic has no fever, and acute cholecystitis causes fever but not usually jaundice because the common duct is not blocked. If she becomes confused and hypotensive, that would be Reynolds' pentad and a sign of severe sepsis.",
     "The most likely diagnosis is acute ascending cholangitis, usually from a stone in the common bile duct. Management is intravenous fluids, broad-spectrum antibiotics and biliary drainage, usually by ERCP, with the urgency guided by how unwell she is."),
    ("A 62-year-old woman presents with a painful red eye, blurred vision with halos around lights, headache and vomiting. The pupil is mid-dilated and does not react to light. What is the diagnosis and which eye drops should be avoided?",
     "A painful red eye with halos, headache, vomiting and a fixed mid-dilated pupil is a classic acute angle-closure glaucoma picture. The drainage angle is blocked by the iris, so pressure inside the eye rises very quickly. Anything that dilates the pupil pushes the iris further into the angle and makes things worse. That means mydriatic and anticholinergic drops such as tropicamide or atropine should be avoided. Treatment aims to lower the pressure quickly and then open the angle with laser iridotomy.",
     "This is acute angle-closure glaucoma, an emergency. Pupil-dilating drops such as atropine or tropicamide must be avoided. Treatment includes pilocarpine, topical beta-blockers, intravenous acetazolamide and urgent ophthalmology review for laser peripheral iridotomy."),
    ("An 82-year-old nursing home resident has new confusion, a fever and pain on passing urine. What is the most likely cause of her confusion?",
     "A sudden change in mental state in an older person is delirium until proven otherwise. Fever and dysuria point to a urinary tract infection as the trigger, which is one of the commonest causes of delirium in the elderly. I should still think about other causes such as new medicines, dehydration, constipation, urinary retention and low sodium. A positive urine dipstick alone is not enough in older people because bacteria in the urine are common without infection, but with fever and dysuria the diagnosis is more convincing.",
     "She most likely has delirium caused by a urinary tract infection. Send a urine culture before antibiotics, check bloods for infection and electrolytes, review her medicines, keep her hydrated and oriented, and treat the infection according to local guidance."),
    ("A 30-year-old man develops dark urine and anaemia two days after starting primaquine. Which enzyme deficiency is most likely?",
     "Primaquine is an oxidant drug. Red cells protect themselves from oxidative stress using glutathione, which is kept in its reduced form by NADPH made in the pentose phosphate pathway. The first enzyme of that pathway is glucose-6-phosphate dehydrogenase. If it is deficient, oxidant drugs damage haemoglobin, forming Heinz bodies, and the cells break down inside the vessels. That explains the dark urine from haemoglobinuria and the sudden anaemia a couple of days after the drug was started.",
     "Glucose-6-phosphate dehydrogenase (G6PD) deficiency is most likely. Primaquine should be stopped, and G6PD levels should be tested before giving primaquine or other oxidant drugs in future."),
    ("A 16-year-old girl has a BMI of 14.5, no periods for six months and a slow heart rate. Which electrolyte problem is the greatest risk when feeding is restarted?",
     "This sounds like severe anorexia nervosa. When someone has been starved and nutrition restarts, insulin rises and drives glucose, phosphate, potassium and magnesium into cells. Phosphate is especially depleted because it is needed to make ATP. A sudden drop in phosphate can cause heart failure, arrhythmias, muscle weakness and confusion. This is refeeding syndrome, and the main laboratory marker is low phosphate in the first days of feeding.",
     "The greatest risk is hypophosphataemia as part of refeeding syndrome. Feeding should start cautiously with close monitoring of phosphate, potassium, magnesium and glucose, together with thiamine and electrolyte replacement as needed."),
    ("A 50-year-old man has a hot, red, swollen big toe joint that began overnight after a heavy night of drinking. What is the likely diagnosis and first-line treatment?",
     "A sudden, very painful, red and swollen first metatarsophalangeal joint is the classic presentation of gout. Alcohol raises uric acid and is a common trigger. I should rule out septic arthritis, which can look similar, especially if he has a fever or is unwell. Joint aspiration would show needle-shaped, negatively birefringent urate crystals. For the acute attack, the goal is to control the inflammation quickly.",
     "This is most likely acute gout. First-line treatment is a full-dose NSAID or low-dose colchicine, with corticosteroids as an alternative if these are unsuitable. Rest, ice and reducing alcohol help, and long-term urate-lowering therapy should be discussed once the attack settles."),
    ("A 40-year-old woman has a thyroid nodule. Fine-needle aspiration shows cells with clear 'Orphan Annie eye' nuclei, nuclear grooves and psammoma bodies. What type of thyroid cancer is this?",
     "The key features are the nuclear findings: clear, empty-looking nuclei described as Orphan Annie eyes, nuclear grooves and inclusions. Psammoma bodies are small round calcified deposits. Together these point to papillary thyroid carcinoma, the most common thyroid cancer, which often spreads to the neck lymph nodes. Follicular carcinoma is diagnosed by capsular or vascular invasion, and medullary carcinoma shows amyloid and secretes calcitonin.",
     "This is papillary thyroid carcinoma, the most common type of thyroid cancer. It usually has a good prognosis and is treated with surgery, sometimes followed by radioactive iodine depending on the stage."),
    ("A 58-year-old man with cirrhosis and ascites presents with fever and diffuse abdominal tenderness. Paracentesis shows 420 neutrophils per microlitre in the ascitic fluid. What is the diagnosis and treatment?",
     "In a patient with cirrhosis and ascites who develops fever and abdominal pain, spontaneous bacterial peritonitis is the first thing to exclude. The diagnostic threshold is an ascitic neutrophil count of more than 250 cells per microlitre, and he has 420. The bacteria usually come from the gut, commonly E. coli or Klebsiella. Treatment should not wait for the culture result. Giving albumin helps prevent kidney failure, which is a serious complication.",
     "He has spontaneous bacterial peritonitis. Treat with an intravenous third-generation cephalosporin such as cefotaxime, and give intravenous albumin on day 1 and day 3 to reduce the risk of hepatorenal syndrome; long-term antibiotic prophylaxis should follow."),
]

REASONING_LONG_COT = long_text(
    "Okay, a sodium of 118 in an elderly woman on a thiazide, and she is confused, so this is severe symptomatic hyponatraemia.",
    "Thiazides are a very common cause in older women because they block sodium reabsorption in the distal tubule while leaving the kidney's ability to hold on to water intact, and many of these patients also drink a lot of fluid or eat little salt.",
    "The first question is how unwell she is. Confusion is a moderate symptom; seizures, reduced consciousness or vomiting would make it severe.",
    "For severe symptoms the first step is a small rapid rise, for example a bolus of 150 mL of 3% hypertonic saline over 20 minutes, repeated if needed, aiming to raise the sodium by about 4 to 6 mmol/L, which is usually enough to reduce brain swelling.",
    "After that the priority changes completely: the total rise in the first 24 hours should be limited, generally to no more than 8 to 10 mmol/L, and to less than 18 mmol/L over 48 hours.",
    "Why so careful? Over days of low sodium, the brain cells adapt by pushing out osmolytes such as glutamate and inositol to avoid swelling.",
    "If the blood sodium then rises too fast, water is pulled out of these adapted cells, and the oligodendrocytes in the pons are especially vulnerable, leading to osmotic demyelination syndrome.",
    "That can cause difficulty speaking and swallowing, paralysis and a locked-in state, often appearing a few days after the correction, so it is easy to miss the link.",
    "Risk is highest with a sodium below 120, chronic hyponatraemia, alcohol use, malnutrition, low potassium and liver disease.",
    "There is also a trap: once the thiazide is stopped and her volume is restored, the kidneys can suddenly start making dilute urine and the sodium can shoot up on its own.",
    "So I would measure sodium every two to four hours, watch the urine output, and be ready to give water or desmopressin to slow things down if the rise is too fast.",
    "Potassium should be corrected too, because replacing potassium also raises the sodium.",
)

REASONING_LONG_RESPONSE = (
    "She has severe symptomatic hyponatraemia caused by the thiazide. Give small boluses of 3% saline to raise the sodium by "
    "4 to 6 mmol/L and relieve symptoms, then limit the total rise to 8 to 10 mmol/L in the first 24 hours, with frequent "
    "sodium checks. Correcting too quickly risks osmotic demyelination syndrome, because the brain has adapted to the low sodium."
)


def build_reasoning_en() -> Mirror:
    m = Mirror("medical_o1_reasoning_sft", "FreedomIntelligence/medical-o1-reasoning-SFT")
    for q, cot, r in REASONING_EN_GOOD:
        m.add({"Question": q, "Complex_CoT": cot, "Response": r})
    q2, cot2, r2 = REASONING_EN_GOOD[2]
    q3, _, _ = REASONING_EN_GOOD[3]
    m.add({"Question": "A 22-year-old woman has a positive pregnancy test, left lower abdominal pain and light vaginal bleeding at seven weeks. What must be excluded urgently?",
           "Complex_CoT": None,
           "Response": "An ectopic pregnancy must be excluded urgently with a transvaginal ultrasound and serial serum beta-hCG levels. If she is unstable, she needs resuscitation and immediate gynaecology review for surgery."},
          Bad("Complex_CoT", "null", "missing_reasoning", "the published build had no skip rule here; an f-string would have written `None` into the reasoning block"))
    m.add({"Question": q2, "Complex_CoT": cot2, "Response": r2},
          Bad("all", "exact duplicate of row 2", "card_global_dedup", "this source has no per-source dedup, so the published policy keeps both copies"))
    m.add({"Question": q3,
           "Complex_CoT": "SSRI plus tramadol, then agitation, sweating and clonus. The combination raises serotonin, and clonus is the key sign of serotonin toxicity rather than neuroleptic malignant syndrome.",
           "Response": "This is serotonin toxicity from an SSRI combined with tramadol. Stop both drugs and give supportive care."},
          Bad("Question", "same question as row 3, different reasoning and response", "kept",
              "no per-source dedup here, and the card's global dedup is on (input, output), which differ: both policies keep it"))
    m.add({"Question": "\n  A 70-year-old man has sudden painless loss of vision in his right eye, describing it as a curtain coming down. What is the likely diagnosis?  ",
           "Complex_CoT": "  A curtain falling over the vision, painless and sudden, in an older man suggests either a retinal detachment or an amaurosis fugax from carotid emboli. A transient curtain that recovers within minutes points to amaurosis fugax, while a persistent curtain with flashes and floaters suggests detachment. The description here is of a persisting curtain, so retinal detachment is the most likely.\n",
           "Response": "Retinal detachment is the most likely diagnosis. He needs same-day ophthalmology assessment, as early surgical repair gives the best chance of preserving vision.  "},
          Bad("Question, Complex_CoT, Response", "leading/trailing whitespace (spaces, newlines)", "kept", "stripping fixes it"))
    m.add({"Question": "A 31-year-old man has a painless, indurated ulcer on the penis and painless enlarged inguinal lymph nodes. What is the likely diagnosis?",
           "Complex_CoT": "A single painless, firm ulcer with painless regional lymph nodes is the classic chancre of primary syphilis. Chancroid is painful, and herpes causes multiple painful vesicles.",
           "Response": ""},
          Bad("Response", "empty string", "missing_response"))
    m.add({"Question": "   ",
           "Complex_CoT": "The question is missing, so there is nothing to reason about.",
           "Response": "Please provide the clinical question."},
          Bad("Question", "whitespace only", "missing_question"))
    m.add({"Question": "A 74-year-old woman taking a thiazide diuretic presents with confusion and a serum sodium of 118 mmol/L. How quickly should her sodium be corrected, and why?",
           "Complex_CoT": REASONING_LONG_COT, "Response": REASONING_LONG_RESPONSE},
          Bad("Complex_CoT", f"over-long reasoning ({len(REASONING_LONG_COT)} chars; mapped output over 1,500)", "card_length"))
    m.add({"Question": "Fever?",
           "Complex_CoT": "The question is only one word. Fever has many causes, so the best answer is a general approach: check how high it is, how long it has lasted and whether there are warning signs.",
           "Response": "Fever is a raised body temperature, usually due to infection. Seek medical help if it is very high, lasts more than three days or comes with a stiff neck, rash, confusion or difficulty breathing."},
          Bad("Question", "very short question (6 chars)", "card_length"))
    return m


REASONING_ZH = [
    {"Question": "一名45岁男性大量饮酒后出现上腹部剧烈疼痛并向背部放射，血清淀粉酶明显升高。最可能的诊断是什么？",
     "Complex_CoT": "患者有大量饮酒史，上腹痛向背部放射，这是急性胰腺炎的典型表现。血清淀粉酶升高到正常上限三倍以上支持这一诊断。需要与消化性溃疡穿孔和急性胆囊炎鉴别，但结合病史最符合急性胰腺炎。",
     "Response": "最可能的诊断是急性胰腺炎，饮酒是常见诱因。治疗包括禁食、积极静脉补液、镇痛，并监测器官功能和并发症。"},
    {"Question": "一名3岁儿童发热时出现全身抽搐，约2分钟后自行停止，醒后神经系统检查正常。最可能的诊断是什么？",
     "Complex_CoT": "年龄在6个月到5岁之间，发热时出现全身性抽搐，持续时间短于15分钟，24小时内未复发，神经系统检查正常，符合单纯性热性惊厥。需要排除中枢神经系统感染，例如脑膜炎。",
     "Response": "最可能是单纯性热性惊厥。应寻找并治疗发热原因，排除脑膜炎等感染，并向家长解释预后通常良好。"},
    {"Question": "一名60岁女性突然出现右侧口角歪斜、鼻唇沟变浅，但抬眉和闭眼正常。病变最可能在哪里？",
     "Complex_CoT": "只有下半部面部受累，额部肌肉正常，说明是中枢性面瘫。额肌受双侧皮质支配，所以上运动神经元病变时抬眉不受影响。病变应在左侧大脑皮质或皮质脑干束。",
     "Response": "这是中枢性面瘫，病变最可能位于对侧（左侧）大脑皮质或皮质脑干束，需要紧急评估是否为脑卒中。"},
]

REASONING_EN_MIX = [
    {"Question": "Summarise how the water cycle works in three sentences.",
     "Complex_CoT": "The user wants a short summary. The main steps are evaporation, condensation, precipitation and collection, driven by the sun's energy.",
     "Response": "The sun heats water in oceans, lakes and rivers so that it evaporates into the air as vapour. The vapour cools as it rises and condenses into clouds, which release the water as rain or snow. The water collects in rivers, lakes, soil and oceans, and the cycle starts again."},
    {"Question": "What is the difference between a virus and a bacterium?",
     "Complex_CoT": "Bacteria are single-celled living organisms that can reproduce on their own; viruses need a host cell to replicate. This matters for treatment, because antibiotics work on bacteria but not on viruses.",
     "Response": "Bacteria are independent single-celled organisms that can grow and divide by themselves, and many can be treated with antibiotics. Viruses are much smaller, can only multiply inside a host's cells, and are not affected by antibiotics; some can be treated with antiviral drugs or prevented with vaccines."},
    {"Question": "Write a short, friendly reminder for a colleague about tomorrow's team meeting at 10 am.",
     "Complex_CoT": "A brief, polite message with the time and a friendly tone is all that is needed.",
     "Response": "Hi! Just a quick reminder that our team meeting is tomorrow at 10 am. See you there!"},
    {"Question": "A 29-year-old woman has a painless, firm, mobile breast lump. What is the most likely diagnosis?",
     "Complex_CoT": "A young woman with a smooth, rubbery, highly mobile and painless lump most likely has a fibroadenoma. It still needs triple assessment.",
     "Response": "The most likely diagnosis is a fibroadenoma, but she should have triple assessment: clinical examination, imaging and, if needed, a biopsy."},
]

REASONING_ZH_MIX = [
    {"Question": "请用两句话解释什么是光合作用。",
     "Complex_CoT": "用户需要简短的解释。要点是植物利用光能把二氧化碳和水转化为葡萄糖和氧气。",
     "Response": "光合作用是绿色植物利用光能，把二氧化碳和水转化为葡萄糖并释放氧气的过程。它主要在叶绿体中进行，为几乎所有生物提供能量和氧气。"},
    {"Question": "高血压患者在日常生活中应注意什么？",
     "Complex_CoT": "需要从饮食、运动、体重、戒烟限酒和按时服药几个方面回答。",
     "Response": "应低盐饮食、规律运动、控制体重、戒烟限酒、保证睡眠，并按医嘱服药和定期监测血压。"},
    {"Question": "一名28岁女性出现心悸、怕热、体重减轻和手抖，最可能的诊断是什么？",
     "Complex_CoT": "心悸、怕热、消瘦和震颤提示甲状腺功能亢进，年轻女性最常见的原因是Graves病。",
     "Response": "最可能是甲状腺功能亢进症，常见原因为Graves病。需要检查TSH、游离T4和甲状腺抗体。"},
]

REASONING_README = """---
license: apache-2.0
task_categories:
- question-answering
- text-generation
language:
- en
- zh
tags:
- medical
- biology
configs:
- config_name: en
  data_files: medical_o1_sft.json
- config_name: zh
  data_files: medical_o1_sft_Chinese.json
- config_name: en_mix
  data_files: medical_o1_sft_mix.json
- config_name: zh_mix
  data_files: medical_o1_sft_mix_Chinese.json
---

# medical-o1-reasoning-SFT (sample-profile mirror)

A small local mirror of `FreedomIntelligence/medical-o1-reasoning-SFT` for the `medset_dagster` sample
profile: same file names, columns and `configs` as the Hub repo; the rows are original text written for
this project. The pipeline reads the `en` config. Written by `medset_dagster/sample_data/build_mirrors.py`.
"""


# --------------------------------------------------------------------------------------------------
# 3. truehealth/medqa (train.jsonl, validation.jsonl, test.jsonl)
# --------------------------------------------------------------------------------------------------


def opts(*texts: str | None) -> dict[str, str | None]:
    """Options A..E; a 4-option question gets "E": None so every row has the same keys (see module doc)."""
    texts = list(texts) + [None] * (5 - len(texts))
    return dict(zip("ABCDE", texts))


MEDQA_GOOD = [
    ("A 23-year-old woman presents with painful urination and urinary frequency for two days. She is sexually active and not pregnant. Urinalysis is positive for leukocyte esterase and nitrites. Which organism is most likely responsible?",
     opts("Staphylococcus saprophyticus", "Escherichia coli", "Proteus mirabilis", "Klebsiella pneumoniae", "Enterococcus faecalis"), "Escherichia coli"),
    ("A 65-year-old man with a 40 pack-year smoking history has progressive breathlessness. Spirometry shows an FEV1/FVC ratio of 0.58 with no significant reversibility after a bronchodilator, and his resting oxygen saturation is 86% on room air. Which intervention has been shown to reduce mortality in this patient?",
     opts("Inhaled corticosteroids", "Long-term oxygen therapy", "Oral theophylline", "Mucolytic therapy", "Oral prednisolone"), "Long-term oxygen therapy"),
    ("A 4-year-old boy has had a fever for 6 days with bilateral non-purulent conjunctivitis, cracked red lips, a polymorphous rash, a swollen cervical lymph node and swelling of the hands and feet. Which complication is most important to screen for?",
     opts("Coronary artery aneurysm", "Mitral stenosis", "Glomerulonephritis", "Intussusception", "Aortic dissection"), "Coronary artery aneurysm"),
    ("A 32-year-old woman has a 3-month history of palpitations, tremor and weight loss. Her TSH is suppressed, free T4 is raised and a radioactive iodine scan shows diffusely increased uptake. Which antibody is responsible for her condition?",
     opts("Anti-thyroid peroxidase antibody", "TSH receptor-stimulating antibody", "Anti-thyroglobulin antibody", "Antimitochondrial antibody", "Anti-smooth muscle antibody"), "TSH receptor-stimulating antibody"),
    ("A 70-year-old woman is brought to the emergency department 90 minutes after the sudden onset of right-sided weakness and difficulty finding words. A non-contrast CT scan of the head shows no bleeding. Her blood pressure is 168/94 mmHg and her blood glucose is normal. What is the most appropriate next step?",
     opts("Oral aspirin 300 mg", "Intravenous alteplase", "Unfractionated heparin infusion", "Lower blood pressure below 120/80 mmHg"), "Intravenous alteplase"),
    ("A 22-year-old tall, thin man who smokes presents with sudden sharp left-sided chest pain and breathlessness that began at rest. Breath sounds are reduced on the left, with increased resonance to percussion. What is the most likely diagnosis?",
     opts("Pulmonary embolism", "Primary spontaneous pneumothorax", "Acute pericarditis", "Community-acquired pneumonia", "Pleural effusion"), "Primary spontaneous pneumothorax"),
    ("A 45-year-old woman with rheumatoid arthritis is starting weekly methotrexate. Which supplement should be prescribed to reduce its adverse effects?",
     opts("Vitamin B12", "Folic acid", "Vitamin D", "Ferrous sulfate", "Zinc"), "Folic acid"),
    ("A 36-year-old man vomits bright red blood after repeated forceful retching following a night of heavy drinking. He is haemodynamically stable and has no history of liver disease. What is the most likely cause of the bleeding?",
     opts("Boerhaave syndrome", "Mallory-Weiss tear", "Oesophageal varices", "Duodenal ulcer"), "Mallory-Weiss tear"),
    ("A 6-week-old infant has a continuous 'machine-like' murmur heard best below the left clavicle. The mother had rubella early in pregnancy. Which heart defect is most likely?",
     opts("Ventricular septal defect", "Patent ductus arteriosus", "Tetralogy of Fallot", "Coarctation of the aorta", "Atrial septal defect"), "Patent ductus arteriosus"),
    ("A 35-year-old man has had low back pain and morning stiffness for over a year that improves with exercise and worsens with rest. X-rays show bilateral sacroiliitis. Which genetic marker is most strongly associated with his condition?",
     opts("HLA-B27", "HLA-DR4", "HLA-DQ2", "HLA-B51", "HLA-DR3"), "HLA-B27"),
    ("A 55-year-old woman with type 2 diabetes on metformin has an eGFR of 48 mL/min/1.73 m2 and persistent albuminuria. Which additional drug class has been shown to slow the progression of her kidney disease?",
     opts("Sulfonylurea", "SGLT2 inhibitor", "Thiazolidinedione", "Alpha-glucosidase inhibitor", "Meglitinide"), "SGLT2 inhibitor"),
    ("A 19-year-old woman has a sore throat, fever, swollen lymph nodes at the back of the neck and a palpable spleen. She develops a widespread rash after being given amoxicillin. What is the most likely diagnosis?",
     opts("Streptococcal pharyngitis", "Infectious mononucleosis", "Acute HIV infection", "Diphtheria", "Measles"), "Infectious mononucleosis"),
    ("A 74-year-old man has had progressive memory loss over three years, with difficulty managing his finances and getting lost in familiar places. Neurological examination is otherwise normal. Which drug class is first-line for symptomatic treatment?",
     opts("Acetylcholinesterase inhibitor", "Dopamine agonist", "Benzodiazepine", "Typical antipsychotic", "Anticholinergic"), "Acetylcholinesterase inhibitor"),
    ("A 26-year-old woman at 10 weeks of gestation has persistent severe nausea and vomiting, has lost 6% of her body weight and has ketones in her urine. Ultrasound shows a single live intrauterine pregnancy. What is the most likely diagnosis?",
     opts("Hyperemesis gravidarum", "Viral gastroenteritis", "Complete molar pregnancy", "Acute appendicitis"), "Hyperemesis gravidarum"),
]

MEDQA_LONG_QUESTION = long_text(
    "A 47-year-old woman comes to the emergency department because of progressive shortness of breath and swelling of both legs over the past four weeks.",
    "She now needs three pillows to sleep and wakes at night gasping for breath.",
    "Eight months ago she completed treatment for left-sided breast cancer, which included surgery, radiotherapy and six cycles of doxorubicin-based chemotherapy followed by trastuzumab, which she is still receiving every three weeks.",
    "She has no history of hypertension, diabetes or heart disease, does not smoke and drinks alcohol only occasionally.",
    "Her mother had a myocardial infarction at the age of 72.",
    "Her temperature is 36.8 C, pulse 112/min and irregular, respiratory rate 24/min and blood pressure 98/64 mmHg; oxygen saturation is 91% on room air.",
    "The jugular venous pressure is raised to the angle of the jaw, there are bibasal crackles to the mid-zones, a third heart sound is heard, and there is pitting oedema to the knees.",
    "An electrocardiogram shows atrial fibrillation with a ventricular rate of 118/min and low-voltage QRS complexes without ST elevation.",
    "Laboratory studies show haemoglobin 11.8 g/dL, sodium 132 mmol/L, potassium 4.4 mmol/L, creatinine 112 umol/L, a high-sensitivity troponin slightly above the upper limit of normal and an NT-proBNP of 6,800 pg/mL.",
    "A chest radiograph shows an enlarged cardiac silhouette, upper lobe venous diversion and small bilateral pleural effusions.",
    "Transthoracic echocardiography shows a dilated left ventricle with global hypokinesia and an ejection fraction of 25%, with no pericardial effusion and no significant valve disease.",
    "Which of the following is the most likely cause of her heart failure?",
)

MEDQA_EXTRA_SPLITS = {
    "validation": [
        {"question": "A 60-year-old man has sudden severe pain and coldness in his left leg. The leg is pale and pulseless. He has atrial fibrillation and takes no anticoagulant. What is the most likely cause?",
         "options": opts("Arterial embolism", "Deep vein thrombosis", "Lumbar disc herniation", "Cellulitis", "Baker cyst rupture"), "answer": "Arterial embolism"},
        {"question": "A 3-year-old child swallowed several of his grandmother's iron tablets an hour ago and now has vomiting and bloody diarrhoea. Which antidote is indicated if toxicity is severe?",
         "options": opts("N-acetylcysteine", "Deferoxamine", "Naloxone", "Flumazenil", "Atropine"), "answer": "Deferoxamine"},
        {"question": "A 29-year-old woman has a widespread itchy rash of raised wheals and swelling of her lips within minutes of eating peanuts. She is wheezing and her blood pressure is 80/50 mmHg. What is the first-line treatment?",
         "options": opts("Oral cetirizine", "Intramuscular adrenaline", "Intravenous hydrocortisone", "Nebulised salbutamol"), "answer": "Intramuscular adrenaline"},
    ],
    "test": [
        {"question": "A 52-year-old man has burning pain in the upper abdomen that improves with meals and returns two to three hours later. Which organism is most commonly associated with his condition?",
         "options": opts("Helicobacter pylori", "Campylobacter jejuni", "Clostridioides difficile", "Giardia lamblia", "Shigella sonnei"), "answer": "Helicobacter pylori"},
        {"question": "A 68-year-old woman has a swollen, tender, warm right calf after a long-haul flight. A Wells score suggests deep vein thrombosis is likely. What is the most appropriate first investigation?",
         "options": opts("D-dimer only", "Proximal leg vein ultrasound", "Venography", "CT pulmonary angiography", "Plain radiograph of the leg"), "answer": "Proximal leg vein ultrasound"},
        {"question": "A 15-year-old boy has sudden severe pain in the left testis that woke him from sleep, with nausea. The testis lies high and the cremasteric reflex is absent. What is the next step?",
         "options": opts("Urgent surgical exploration", "Oral antibiotics", "Scrotal support and analgesia", "Ultrasound in one week"), "answer": "Urgent surgical exploration"},
    ],
}


def build_medqa() -> Mirror:
    m = Mirror("medqa", "truehealth/medqa")
    for q, o, a in MEDQA_GOOD:
        m.add({"question": q, "options": o, "answer": a})
    q5, o5, a5 = MEDQA_GOOD[5]
    q7, o7, _ = MEDQA_GOOD[7]
    m.add({"question": "A 48-year-old man with poorly controlled hypertension has sudden severe tearing chest pain radiating to his back, and his blood pressure differs by 30 mmHg between the arms. What is the most likely diagnosis?",
           "options": opts("Aortic dissection", "Acute myocardial infarction", "Pulmonary embolism", "Oesophageal rupture", ""), "answer": "Aortic dissection"},
          Bad("options.E", "option E is an empty string", "kept", "the context lists A) to D) only; empty options are left out"))
    m.add({"question": "A 31-year-old man notices a painless, hard lump in his right testis that does not transilluminate. Serum alpha-fetoprotein is normal and beta-hCG is mildly raised. What is the most likely diagnosis?",
           "options": opts("Epididymo-orchitis", "Hydrocele", "Testicular germ cell tumour", "Varicocele", "Testicular torsion"), "answer": "Testicular seminoma"},
          Bad("answer", "answer text matches no option", "answer_not_in_options"))
    m.add({"question": q5, "options": o5, "answer": a5}, Bad("all", "exact duplicate of row 5", "duplicate_input"))
    m.add({"question": q7, "options": o7, "answer": "Oesophageal varices"},
          Bad("question, answer", "same question as row 7, different answer", "duplicate_input", "dedup keeps the first occurrence (row 7)"))
    m.add({"question": MEDQA_LONG_QUESTION,
           "options": opts("Ischaemic cardiomyopathy", "Anthracycline-induced cardiomyopathy", "Constrictive pericarditis", "Cardiac amyloidosis", "Tachycardia-induced cardiomyopathy"),
           "answer": "Anthracycline-induced cardiomyopathy"},
          Bad("question", f"over-long question ({len(MEDQA_LONG_QUESTION)} chars)", "card_length", "reaches the LLM; the card's length filter drops the finished record (input over 1,500)"))
    m.add({"question": "", "options": opts("Amiodarone", "Adenosine", "Digoxin", "Verapamil", "Atropine"), "answer": "Adenosine"},
          Bad("question", "empty string", "missing_question"))
    m.add({"question": "  A 27-year-old woman has episodes of pallor then blueness of her fingers in the cold, followed by redness on rewarming. She has no other symptoms. What is the most likely diagnosis? \n",
           "options": opts("Primary Raynaud phenomenon", "Systemic sclerosis", "Buerger disease", "Chilblains", "Acrocyanosis"), "answer": " Primary Raynaud phenomenon"},
          Bad("question, answer", "leading/trailing whitespace", "kept", "stripping fixes it"))
    m.add({"question": "Next step", "options": opts("Observation", "Intravenous fluids", "Emergency surgery", "Oral antibiotics"), "answer": "Intravenous fluids"},
          Bad("question", "very short question (9 chars)", "card_length", "reaches the LLM; the card's length filter drops the finished record (input under 10)"))
    m.add({"question": "A 58-year-old man has a chronic productive cough, finger clubbing and crackles at both lung bases; CT shows dilated, thick-walled bronchi. What is the most likely diagnosis?",
           "options": opts("Bronchiectasis", "Asthma", "Sarcoidosis", "Lung abscess", "Pulmonary fibrosis"), "answer": None},
          Bad("answer", "null", "missing_answer"))
    return m


# --------------------------------------------------------------------------------------------------
# 4. gamino/wiki_medical_terms (wiki_medical_terms.parquet)
# --------------------------------------------------------------------------------------------------

WIKI_GOOD = [
    ("Appendicitis",
     "Appendicitis is inflammation of the appendix, a small finger-shaped pouch attached to the large intestine. "
     "It usually begins with vague pain around the navel that moves to the lower right abdomen over several hours, often with loss of appetite, nausea and a low fever. "
     "The cause is often blockage of the appendix by hardened stool, swollen lymphoid tissue or, rarely, a tumour, which allows bacteria to multiply. "
     "If it is not treated, the inflamed appendix can burst and cause peritonitis or an abscess. "
     "Diagnosis is based on the history and examination, supported by blood tests and imaging such as ultrasound or computed tomography. "
     "The standard treatment is surgical removal of the appendix, usually by laparoscopy, although selected uncomplicated cases can be treated with antibiotics alone."),
    ("Atrial fibrillation",
     "Atrial fibrillation is an abnormal heart rhythm in which the upper chambers of the heart beat rapidly and irregularly. "
     "Many people have no symptoms, while others notice palpitations, breathlessness, tiredness or dizziness. "
     "Risk factors include high blood pressure, heart valve disease, heart failure, an overactive thyroid, obesity and heavy alcohol use, and it becomes more common with age. "
     "Because blood can pool in the atria, clots may form and travel to the brain, so atrial fibrillation increases the risk of stroke about fivefold. "
     "Treatment aims to control the heart rate or restore a normal rhythm, and most patients with additional risk factors are offered anticoagulant medicines to prevent stroke."),
    ("Cellulitis",
     "Cellulitis is a bacterial infection of the deeper layers of the skin and the tissue beneath it. "
     "The affected area becomes red, swollen, warm and painful, and the redness may spread over hours to days. "
     "It most often affects the lower legs and is usually caused by streptococci or Staphylococcus aureus entering through a break in the skin, such as a cut, ulcer or athlete's foot. "
     "People with diabetes, obesity, lymphoedema or a weakened immune system are at higher risk. "
     "Most cases are treated with oral antibiotics, while severe infection with fever or rapid spread may need intravenous treatment in hospital."),
    ("Hypothyroidism",
     "Hypothyroidism is a condition in which the thyroid gland does not produce enough thyroid hormone. "
     "Symptoms develop slowly and include tiredness, weight gain, feeling cold, constipation, dry skin, hair thinning, low mood and heavy periods. "
     "Worldwide the most common cause is lack of iodine in the diet, while in countries with adequate iodine it is most often due to autoimmune Hashimoto's thyroiditis. "
     "The diagnosis is confirmed by a raised thyroid-stimulating hormone level with a low free thyroxine level in the blood. "
     "Treatment is daily replacement with levothyroxine, with the dose adjusted according to regular blood tests."),
    ("Migraine",
     "Migraine is a common neurological disorder characterised by recurrent moderate to severe headaches, typically on one side of the head and of a throbbing quality. "
     "Attacks often last from four hours to three days and are commonly accompanied by nausea, vomiting and sensitivity to light and sound. "
     "About a third of people with migraine experience an aura, usually visual disturbances such as flashing lights or zigzag lines, shortly before the headache. "
     "Triggers can include stress, lack of sleep, hormonal changes, missed meals and certain foods. "
     "Acute attacks are treated with simple painkillers or triptans, and people with frequent attacks may benefit from preventive medicines such as beta-blockers or topiramate."),
    ("Pulmonary embolism",
     "A pulmonary embolism is a blockage of an artery in the lungs, most often by a blood clot that has travelled from a deep vein in the leg. "
     "Typical symptoms are sudden breathlessness, chest pain that is worse on breathing in, a fast heart rate and sometimes coughing up blood. "
     "Risk factors include recent surgery, prolonged immobility, cancer, pregnancy, oestrogen-containing medicines and a previous clot. "
     "Diagnosis relies on clinical probability scores, D-dimer testing and imaging, usually computed tomography pulmonary angiography. "
     "Treatment is with anticoagulants, and clot-dissolving drugs are used when the embolism causes shock."),
    ("Gout",
     "Gout is a form of inflammatory arthritis caused by deposits of monosodium urate crystals in and around joints. "
     "It typically causes sudden attacks of severe pain, redness and swelling, most often in the joint at the base of the big toe. "
     "High levels of uric acid in the blood are the main risk factor, linked to genetics, kidney disease, obesity, diuretics, alcohol and a diet rich in purines. "
     "Attacks are treated with anti-inflammatory drugs, colchicine or corticosteroids. "
     "Long-term treatment with urate-lowering drugs such as allopurinol prevents further attacks and can dissolve crystal deposits called tophi."),
    ("Anaphylaxis",
     "Anaphylaxis is a severe, life-threatening allergic reaction that develops rapidly, usually within minutes of exposure to a trigger. "
     "Common triggers are foods such as peanuts and shellfish, insect stings and medicines such as antibiotics. "
     "Symptoms can include an itchy rash, swelling of the lips or tongue, wheezing, difficulty breathing, vomiting and a sudden fall in blood pressure. "
     "The first-line treatment is adrenaline injected into the outer thigh muscle, repeated after five minutes if there is no improvement. "
     "People at risk are advised to carry adrenaline auto-injectors and to avoid known triggers."),
    ("Iron-deficiency anemia",
     "Iron-deficiency anemia is anemia caused by a lack of iron, which the body needs to make haemoglobin. "
     "It is the most common type of anemia worldwide and is especially frequent in young children, menstruating women and pregnant women. "
     "Causes include blood loss, for example from heavy periods or the gut, poor dietary intake and reduced absorption, as in coeliac disease. "
     "Symptoms include tiredness, pale skin, shortness of breath on exertion and brittle or spoon-shaped nails. "
     "Blood tests typically show small, pale red cells and a low ferritin level. "
     "Treatment involves oral or intravenous iron and finding and treating the underlying cause."),
    ("Tuberculosis",
     "Tuberculosis is an infectious disease caused by the bacterium Mycobacterium tuberculosis, which mainly affects the lungs. "
     "It spreads through the air when a person with active lung disease coughs or sneezes. "
     "Most infected people have latent infection without symptoms, but about one in ten will develop active disease, with a higher risk in people with HIV, diabetes or malnutrition. "
     "Active disease causes a persistent cough, fever, night sweats and weight loss. "
     "Standard treatment lasts at least six months and uses a combination of antibiotics, typically isoniazid, rifampicin, pyrazinamide and ethambutol."),
    ("Osteoporosis",
     "Osteoporosis is a disease in which bones become weak and brittle because of reduced bone mass and deterioration of bone structure. "
     "It usually causes no symptoms until a bone breaks, most often in the hip, spine or wrist after a minor fall. "
     "It is most common in older women after the menopause, when falling oestrogen levels speed up bone loss. "
     "Other risk factors include long-term corticosteroid use, smoking, low body weight and a family history of hip fracture. "
     "Diagnosis is made with a bone density scan, and treatment includes calcium, vitamin D, weight-bearing exercise and medicines such as bisphosphonates."),
    ("Kawasaki disease",
     "Kawasaki disease is an illness of unknown cause that mainly affects children under five years old and causes inflammation of medium-sized blood vessels. "
     "It begins with a high fever lasting at least five days, along with red eyes, a rash, red cracked lips, a strawberry tongue and swelling of the hands and feet. "
     "Its most serious complication is inflammation and widening of the coronary arteries, which can lead to aneurysms and heart attacks. "
     "Treatment with intravenous immunoglobulin and aspirin, given early, greatly reduces the risk of coronary artery damage. "
     "Children are followed up with echocardiography to check the heart."),
    ("Sickle cell disease",
     "Sickle cell disease is a group of inherited blood disorders in which red blood cells take on a rigid, sickle-like shape. "
     "It is caused by a mutation in the gene for the beta chain of haemoglobin and is inherited when a child receives an abnormal gene from both parents. "
     "The sickled cells break down early, causing anaemia, and can block small blood vessels, leading to painful crises, stroke, infections and organ damage. "
     "Treatment includes pain relief, fluids, vaccinations, antibiotics to prevent infection, hydroxyurea and blood transfusions, and some patients are cured by bone marrow transplantation."),
    ("Coeliac disease",
     "Coeliac disease is a long-term autoimmune disorder in which eating gluten damages the lining of the small intestine. "
     "Gluten is a protein found in wheat, barley and rye. "
     "Symptoms vary widely and may include diarrhoea, bloating, weight loss, tiredness and iron-deficiency anaemia, while some people have few symptoms. "
     "Diagnosis is based on blood tests for antibodies such as anti-tissue transglutaminase, usually confirmed by a biopsy of the small intestine taken while the person is still eating gluten. "
     "The only effective treatment is a strict lifelong gluten-free diet, which allows the intestine to heal."),
]

WIKI_LONG_ARTICLE = long_text(
    "Sepsis is a life-threatening condition that arises when the body's response to an infection injures its own tissues and organs.",
    "It is one of the leading causes of death in hospitals worldwide, and survivors often have lasting physical, cognitive and psychological problems.",
    "Any type of infection can lead to sepsis, but the most common sources are infections of the lungs, the urinary tract, the abdomen and the skin.",
    "Bacteria are the usual cause, although viruses, including influenza and coronaviruses, and fungi can also trigger it.",
    "People at greatest risk include infants, older adults, pregnant women and people with long-term illnesses such as diabetes, kidney disease, cancer or a weakened immune system.",
    "Early signs can be subtle and include fever or a low body temperature, a fast heart rate, rapid breathing, confusion and feeling extremely unwell.",
    "As the condition progresses, blood pressure may fall, urine output may drop and the skin may become mottled or cold.",
    "Septic shock is the most severe form, in which very low blood pressure persists despite fluid resuscitation and medicines called vasopressors are needed to maintain circulation, with a high risk of death.",
    "The underlying mechanism involves an uncontrolled release of inflammatory substances, damage to the lining of blood vessels, leakage of fluid into the tissues and abnormal blood clotting.",
    "Together these reduce the delivery of oxygen to organs such as the kidneys, liver, lungs and brain.",
    "The current definition describes sepsis as organ dysfunction caused by a dysregulated host response to infection, and organ dysfunction is measured with scoring systems such as the Sequential Organ Failure Assessment score.",
    "A simpler bedside tool, known as quick SOFA, looks for a low blood pressure, a high breathing rate and altered mental state, but it is not sensitive enough to rule sepsis out.",
    "Blood tests often show a high or low white cell count, a raised lactate level and signs of kidney or liver injury.",
    "Doctors take blood cultures and samples from the suspected site of infection, ideally before antibiotics are given, to identify the organism and its sensitivities.",
    "Imaging such as chest radiography, ultrasound or computed tomography may be needed to find the source, for example an abscess or a blocked and infected kidney.",
    "Treatment is most effective when started early.",
    "Broad-spectrum intravenous antibiotics should be given within one hour of recognising septic shock, and are then narrowed once culture results are available.",
    "Intravenous fluids are given to restore circulation, and vasopressors such as noradrenaline are added if blood pressure remains low.",
    "Controlling the source of infection is essential and may involve draining an abscess, removing an infected device or operating on a perforated bowel.",
    "Many patients need care in an intensive care unit, where organ support such as mechanical ventilation or kidney replacement therapy can be provided.",
    "Corticosteroids may be used in septic shock that does not respond to fluids and vasopressors.",
    "Prevention relies on vaccination, good hygiene, careful management of chronic diseases and the prompt treatment of infections.",
    "Public awareness campaigns encourage people to seek urgent help if an infection is accompanied by confusion, slurred speech, severe breathlessness or mottled skin.",
    "Hospitals use screening tools and care bundles to recognise and treat sepsis quickly, and these programmes have been associated with lower death rates.",
    "After discharge, many survivors experience fatigue, muscle weakness, sleep problems, anxiety and difficulty concentrating, a pattern sometimes called post-sepsis syndrome.",
    "They are also at increased risk of further infections and readmission to hospital, so follow-up and rehabilitation are important parts of recovery.",
)


def build_wiki() -> Mirror:
    m = Mirror("wiki_medical_terms", "gamino/wiki_medical_terms")
    for title, text in WIKI_GOOD:
        m.add({"page_title": title, "page_text": text})
    m.add({"page_title": "Sepsis", "page_text": WIKI_LONG_ARTICLE},
          Bad("page_text", f"over-long article ({len(WIKI_LONG_ARTICLE)} chars)", "kept",
              "no mapper rule; exercises the LLM prompt's context budget (a context cap would truncate or drop it)"))
    m.add({"page_title": "Hyperkalemia", "page_text": None}, Bad("page_text", "null", "missing_text"))
    m.add({"page_title": "Bradycardia", "page_text": ""}, Bad("page_text", "empty string", "missing_text"))
    m.add({"page_title": "Tachypnea", "page_text": " \n\t "}, Bad("page_text", "whitespace only", "missing_text"))
    m.add({"page_title": "Xerosis", "page_text": "Redirect"},
          Bad("page_text", "very short text (8 chars)", "kept", "no mapper rule on context length; the LLM gets almost nothing to write from"))
    m.add({"page_title": WIKI_GOOD[4][0], "page_text": WIKI_GOOD[4][1]},
          Bad("page_title, page_text", "exact duplicate of row 4", "duplicate_context"))
    m.add({"page_title": "  Asthma ",
           "page_text": "\n\nAsthma is a long-term inflammatory disease of the airways of the lungs. "
                        "It causes recurring episodes of wheezing, coughing, chest tightness and shortness of breath, often worse at night or with exercise. "
                        "The airways narrow because of muscle spasm, swelling and excess mucus in response to triggers such as allergens, cold air, smoke and respiratory infections. "
                        "Diagnosis is based on the pattern of symptoms and tests of lung function that show variable airflow obstruction. "
                        "Treatment includes inhaled corticosteroids to control inflammation and short-acting bronchodilators such as salbutamol to relieve symptoms.  \n"},
          Bad("page_title, page_text", "leading/trailing whitespace (spaces, newlines)", "kept", "stripping fixes it"))
    m.add({"page_title": None,
           "page_text": "Rickets is a condition of children in which the bones become soft and weak, usually because of a lack of vitamin D or calcium. "
                        "It can cause bowed legs, delayed growth, bone pain and dental problems. "
                        "Vitamin D is made in the skin on exposure to sunlight and is also found in oily fish and fortified foods, so rickets is more common in children with little sun exposure or a restricted diet. "
                        "Treatment with vitamin D and calcium supplements usually corrects the problem, and mild bone deformities often improve as the child grows."},
          Bad("page_title", "null title (text is fine)", "missing_title", "`wiki_generation_inputs` requires a title"))
    return m


# --------------------------------------------------------------------------------------------------
# 5. gretelai/symptom_to_diagnosis (train.jsonl, test.jsonl)
# --------------------------------------------------------------------------------------------------

SYMPTOM_GOOD = [
    ("I have been getting bad headaches on one side of my head that throb and get worse with light and noise. I sometimes feel sick to my stomach before they start.", "migraine"),
    ("My nose has been runny and stuffy for three days, I keep sneezing, and my throat feels scratchy. I have a slight temperature but otherwise feel okay.", "common cold"),
    ("I have thick, red patches of skin on my elbows and knees covered with silvery scales. They itch and sometimes crack and bleed.", "psoriasis"),
    ("I've had a high fever for four days with severe pain behind my eyes and in my joints and muscles. Today I noticed a red rash on my arms and my gums bled when I brushed my teeth.", "dengue"),
    ("It burns when I pee and I feel like I need to go all the time, even right after I've been. My urine looks cloudy and smells strong.", "urinary tract infection"),
    ("I have a cough bringing up yellow-green phlegm, a fever with shaking chills, and a sharp pain in my chest when I breathe in deeply. I get out of breath walking up the stairs.", "pneumonia"),
    ("I get a burning pain in my chest after meals, especially when I lie down at night, and a sour taste comes up into my mouth.", "gastroesophageal reflux disease"),
    ("Every couple of days I get high fevers with shivering, followed by heavy sweating. I came back from a trip to West Africa two weeks ago and I feel exhausted.", "malaria"),
    ("My daughter has an itchy rash of small red spots that turned into blisters filled with clear fluid, spreading from her chest to her face. She has a slight fever and is tired.", "chicken pox"),
    ("I'm always thirsty and I pee a lot, even at night. I've lost weight without trying and my vision gets blurry sometimes.", "diabetes"),
    ("My neck has been stiff and painful for months and the pain spreads into my shoulders. Sometimes my hands feel numb and tingly.", "cervical spondylosis"),
    ("I wheeze and my chest feels tight, especially at night and when I exercise or am around cats. I cough a lot and sometimes can't catch my breath.", "bronchial asthma"),
    ("The whites of my eyes and my skin have turned yellow, my urine is dark like tea and my stools are pale. I feel itchy and tired.", "jaundice"),
    ("I have a gnawing, burning pain in the upper part of my belly that gets better when I eat but comes back a few hours later. I've been taking ibuprofen every day for my back.", "peptic ulcer disease"),
    ("The veins on the backs of my legs are swollen, twisted and bluish. My legs ache and feel heavy after standing at work all day.", "varicose veins"),
    ("My fever has climbed slowly over the past week and I have a headache, stomach pain and constipation. I feel very weak and have no appetite.", "typhoid"),
    ("My knees and finger joints are swollen and stiff, especially in the morning, and it hurts to grip things or climb stairs.", "arthritis"),
]

SYMPTOM_LONG_INPUT = long_text(
    "Okay so I'll try to explain everything because it has been going on for a while and I'm not sure what matters.",
    "For about two months I've been getting headaches, mostly at the back of my head, and they are worst when I wake up in the morning and then ease off a bit by lunchtime.",
    "A few times I've had nosebleeds out of nowhere, which I never used to get, and once it took almost twenty minutes to stop.",
    "I also get dizzy when I stand up quickly at work, and last week I had a strange pounding feeling in my chest and ears while I was climbing the stairs to my flat.",
    "My vision goes a bit blurry in the evenings when I'm reading, though I thought that was just tiredness from looking at screens all day.",
    "I work long hours in an office, I don't really exercise, I've put on quite a bit of weight over the last few years, and I eat a lot of takeaway food and crisps because it's quick.",
    "I drink maybe three or four beers most evenings to relax, and I smoke about ten cigarettes a day, though I keep saying I'll stop.",
    "My dad had a stroke when he was 58 and my mum takes tablets for her heart, I think.",
    "The pharmacy near my work has one of those free machines, and when I tried it the reading was 168 over 104, and when I tried again a week later it was 172 over 101.",
    "I don't have chest pain as such, no fever, no cough, and my appetite is normal.",
    "I sleep badly and my partner says I snore really loudly and sometimes stop breathing for a few seconds, which I find a bit worrying.",
    "I feel tired most of the day and have trouble concentrating in meetings, and I get irritable more easily than I used to.",
    "I haven't been to a doctor in years because I always felt fine, but my partner insisted I write all of this down before the appointment.",
)


def build_symptom() -> Mirror:
    m = Mirror("symptom_to_diagnosis", "gretelai/symptom_to_diagnosis")
    for text, label in SYMPTOM_GOOD:
        m.add({"output_text": label, "input_text": text})
    m.add({"output_text": "allergy", "input_text": ""}, Bad("input_text", "empty string", "missing_symptoms"))
    m.add({"output_text": "", "input_text": "I have red, itchy sores around my nose and mouth that burst and left honey-coloured crusts. My little brother has the same thing now."},
          Bad("output_text", "empty string", "missing_diagnosis"))
    m.add({"output_text": "fungal infection", "input_text": "    "}, Bad("input_text", "whitespace only", "missing_symptoms"))
    m.add({"output_text": None, "input_text": "My skin broke out in an itchy red rash with blisters two days after I started a new antibiotic, and my lips feel swollen."},
          Bad("output_text", "null", "missing_diagnosis"))
    m.add({"output_text": SYMPTOM_GOOD[1][1], "input_text": SYMPTOM_GOOD[1][0]}, Bad("all", "exact duplicate of row 1", "duplicate_input"))
    m.add({"output_text": "hypertension", "input_text": SYMPTOM_GOOD[0][0]},
          Bad("input_text, output_text", "same input as row 0, different label", "duplicate_input", "dedup keeps the first occurrence (row 0)"))
    m.add({"output_text": "hypertension", "input_text": SYMPTOM_LONG_INPUT},
          Bad("input_text", f"over-long input ({len(SYMPTOM_LONG_INPUT)} chars)", "card_length", "reaches the LLM; the card's length filter drops the finished record (input over 1,500)"))
    m.add({"output_text": "common cold", "input_text": "I'm sick"},
          Bad("input_text", "very short input (8 chars)", "card_length", "reaches the LLM; the card's length filter drops the finished record (input under 10)"))
    m.add({"output_text": "  drug reaction ", "input_text": "\n I started a new blood pressure tablet last week and since then I've had an itchy rash all over my body and my face feels puffy.  "},
          Bad("input_text, output_text", "leading/trailing whitespace", "kept", "stripping fixes it"))
    return m


SYMPTOM_TEST = [
    {"output_text": "allergy", "input_text": "Every spring my eyes get itchy and watery, I sneeze constantly and my nose runs like a tap, especially after I've been in the garden."},
    {"output_text": "impetigo", "input_text": "There are small blisters on my son's chin that burst and left yellow crusty scabs. They are spreading to his cheek and are a bit itchy."},
    {"output_text": "fungal infection", "input_text": "I have a red, ring-shaped itchy rash in my groin that has a clear centre and keeps spreading outwards. It gets worse when I sweat."},
    {"output_text": "hypertension", "input_text": "I've had headaches at the back of my head in the mornings and my blood pressure readings at the pharmacy were high three times in a row."},
]


# --------------------------------------------------------------------------------------------------
# 6. paulelliotco/synthetic-disaster-reports (data/train-00000-of-00001.parquet)
# --------------------------------------------------------------------------------------------------

DISASTER_GOOD = [
    ("Flood", "High", "Riverside district, Cedar Falls",
     "Water levels rose 1.5 metres overnight. Around 40 households are stranded on upper floors and two elderly residents need evacuation with mobility support.",
     ["rescue boats", "life jackets", "drinking water", "blankets"]),
    ("Earthquake", "Critical", "Old town, Marivale",
     "Several apartment blocks have partially collapsed. Search teams report people trapped under rubble and multiple crush injuries among survivors.",
     ["search and rescue teams", "heavy lifting equipment", "trauma kits", "field hospital"]),
    ("Wildfire", "Moderate", "North ridge, Pine Hollow",
     "The fire front is 3 km from the nearest homes. Several residents report smoke inhalation symptoms and one firefighter has minor burns to the forearm.",
     ["respirator masks", "burn dressings", "water tankers"]),
    ("Hurricane", "High", "Harbour area, Port Alder",
     "Roofs torn off across the harbour area and power lines are down. The local clinic is running on a generator with fuel for about twelve hours.",
     ["generator fuel", "tarpaulins", "insulin refrigeration", "satellite phones"]),
    ("Tornado", "Moderate", "Eastfield caravan park",
     "A narrow path of destruction through the park. Lacerations from flying debris and one suspected fractured femur; patients are stabilised at the community centre.",
     ["splints", "wound care supplies", "ambulance transport"]),
    ("Landslide", "High", "Highway 9, Kessel Valley",
     "A bus was partly buried by mud. Passengers freed so far have hypothermia and limb injuries, and the road is blocked in both directions.",
     ["excavator", "thermal blankets", "stretchers", "helicopter evacuation"]),
    ("Chemical Spill", "Critical", "Industrial estate, Brantwick",
     "A ruptured tanker released chlorine gas near a primary school. Children are coughing with eye irritation and several have difficulty breathing.",
     ["decontamination unit", "oxygen", "eye irrigation saline", "protective suits"]),
    ("Heatwave", "Moderate", "City centre, Solmara",
     "Temperatures have stayed above 42 degrees for four days. Elderly residents living alone are presenting with confusion, dehydration and heat exhaustion.",
     ["cooling centres", "oral rehydration salts", "water distribution"]),
    ("Flood", "Low", "Millbrook village",
     "Shallow flooding of streets and basements. No injuries reported, but there is concern about contaminated wells and diarrhoeal illness in the coming days.",
     ["water purification tablets", "hygiene kits"]),
    ("Earthquake", "Moderate", "Hillside suburbs, Tavira",
     "Cracks have appeared in several schools and the hospital annex has been evacuated. Minor injuries only, but aftershocks are frightening residents and many are sleeping outdoors.",
     ["tents", "structural engineers", "psychological first aid"]),
    ("Blizzard", "High", "Mountain pass, Eldvik",
     "Twenty vehicles were trapped in snowdrifts overnight. Several occupants have frostbite on their fingers and one driver is hypothermic and drowsy.",
     ["snowplough", "heated shelter", "rewarming supplies"]),
    ("Wildfire", "Critical", "Canyon Road settlement",
     "The fire has jumped the containment line and is moving towards a care home with 60 residents, many of whom use wheelchairs.",
     ["accessible evacuation buses", "portable oxygen", "medical escorts"]),
    ("Tsunami", "Critical", "Serin Bay fishing villages",
     "A wave of about four metres struck the shoreline. Many people are missing, and survivors have near-drowning injuries and contaminated wounds.",
     ["search boats", "antibiotics", "tetanus vaccine", "clean water"]),
]

DISASTER_LONG_NOTES = long_text(
    "Initial assessment at 06:40 by the second response team after the river burst its banks upstream of the town.",
    "The main bridge is closed and the only access is by the northern farm track, which is passable for four-wheel-drive vehicles only.",
    "Approximately 300 people are sheltering in the secondary school gymnasium, which has power from a generator but no running water, and toilets are overflowing.",
    "Among them are at least 25 children under five, eight pregnant women including one who reports contractions every ten minutes, and around 40 people over 75.",
    "Several residents missed their regular medicines because they left home in a hurry, including insulin, anti-epileptic drugs and blood pressure tablets.",
    "Three dialysis patients normally attend the regional hospital and are now overdue for treatment; one is breathless with swollen legs.",
    "The community nurse has treated around 30 minor cuts from debris, two of which look infected, and one man has a deep laceration to the calf that needs suturing.",
    "Two people have diarrhoea and vomiting since last night, and we are worried about spread in the crowded hall.",
    "Volunteers are distributing bottled water, but supplies will run out by this evening at the current rate.",
    "Many people are wet and cold, and we have only 60 blankets for 300 people.",
    "Mobile phone coverage is intermittent and the landline at the school is not working, so we are relaying messages by radio through the fire service.",
    "Water is still rising slowly on the eastern side of town and there are reports of a family of four on a roof on Mill Lane who have not yet been reached.",
    "The local pharmacy is flooded and closed, and the nearest open pharmacy is 40 km away.",
    "Morale is low and several people are very distressed, particularly those who have lost pets or cannot contact relatives.",
)


def build_disaster() -> Mirror:
    m = Mirror("synthetic_disaster_reports", "paulelliotco/synthetic-disaster-reports")

    def row(i: int, dtype, sev, loc, notes, needs) -> dict[str, Any]:
        return {"report_id": f"DR-{i:04d}", "disaster_type": dtype, "severity_level": sev, "location": loc,
                "responder_notes": notes, "resource_needs": needs}

    for i, g in enumerate(DISASTER_GOOD, start=1):
        m.add(row(i, *g))
    n = len(DISASTER_GOOD)
    m.add(row(n + 1, "Flood", "Moderate", "Lower Ashby", "", ["sandbags", "pumps"]),
          Bad("responder_notes", "empty string", "missing_responder_notes"))
    m.add(row(n + 2, "Earthquake", None, "Ridgeway", "A school gym roof has partly collapsed; four children have minor injuries and staff are accounting for everyone.", ["first aid kits", "structural engineers"]),
          Bad("severity_level", "null", "missing_severity_level"))
    m.add(row(n + 3, "Hurricane", "Low", "Gull Point", "Minor wind damage to fences and a few fallen trees. No injuries; residents are clearing debris themselves.", []),
          Bad("resource_needs", "empty list", "missing_resource_needs"))
    m.add(row(n + 4, "Storm Surge", "High", "Saltmarsh estate", "Seawater has entered ground-floor homes along the front and several older residents are refusing to leave.", None),
          Bad("resource_needs", "null list", "missing_resource_needs"))
    m.add(dict(m.rows[1]), Bad("all", "exact duplicate of row 1 (same report_id)", "duplicate_input"))
    m.add(row(n + 5, *DISASTER_GOOD[2][:4], ["air tankers", "evacuation buses"]),
          Bad("resource_needs", "same type, severity and notes as row 2 (same input), different resource_needs", "duplicate_input",
              "dedup keeps the first occurrence (row 2)"))
    m.add(row(n + 6, "Flood", "Critical", "Ashford town centre", DISASTER_LONG_NOTES,
              ["drinking water", "blankets", "insulin", "dialysis transport", "obstetric kit", "sanitation units", "radios"]),
          Bad("responder_notes", f"over-long notes ({len(DISASTER_LONG_NOTES)} chars)", "card_length"))
    m.add(row(n + 7, "  ", "High", "Unknown", "Reports of damage near the market; details unclear.", ["assessment team"]),
          Bad("disaster_type", "whitespace only", "missing_disaster_type"))
    m.add(row(n + 8, " Landslide", "HIGH ", "Corran Hills", "  Mud has blocked the only road to the village; three houses were hit and one man is trapped by his legs.\n", ["rescue team", "excavator"]),
          Bad("disaster_type, severity_level, responder_notes", "leading/trailing whitespace; severity in upper case", "kept",
              "stripping fixes it; the template lower-cases severity and type"))
    m.add(row(n + 9, "Flood", "Low", "Brook End", "N/A", ["sandbags"]),
          Bad("responder_notes", "very short notes (3 chars)", "kept",
              "no rule catches it: the template pads the input past 10 characters ('There is a low flood. Situation: N/A')"))
    return m


# --------------------------------------------------------------------------------------------------
# 7. truehealth/medicationqa (data/train-00000-of-00001.parquet)
# --------------------------------------------------------------------------------------------------

MEDQA_COLS = ("Question", "Focus (Drug)", "Question Type", "Answer", "Section Title", "URL")


def url(drug: str) -> str:
    return f"https://www.example.org/druginfo/{drug.lower().replace(' ', '-')}.html"


MEDICATIONQA_GOOD = [
    ("can i take ibuprofen with lisinopril", "lisinopril", "Interaction",
     "Anti-inflammatory painkillers such as ibuprofen can reduce the blood-pressure-lowering effect of lisinopril and, especially in older people or anyone who is dehydrated, can harm the kidneys when taken with an ACE inhibitor. Occasional short use may be acceptable for some people, but check with your doctor or pharmacist first; paracetamol (acetaminophen) is usually a safer choice for pain.",
     "What special precautions should I follow?"),
    ("how long does it take for sertraline to work", "sertraline", "Time",
     "Some people notice better sleep, energy or appetite within one to two weeks, but the full effect of sertraline on mood usually takes four to six weeks. Keep taking it as prescribed even if you do not feel better straight away, and do not stop suddenly without talking to your doctor.",
     "How should this medicine be used?"),
    ("what is metformin used for", "metformin", "Indication",
     "Metformin is used with diet and exercise to control blood sugar in adults and children with type 2 diabetes. It works by reducing the amount of glucose made by the liver and helping the body respond better to insulin. It is sometimes also used for other conditions, such as polycystic ovary syndrome, on a doctor's advice.",
     "Why is this medication prescribed?"),
    ("how should i store my insulin pens", "insulin glargine", "Storage and disposal",
     "Store unopened insulin pens in the refrigerator, not in the freezer, and never use insulin that has been frozen. Once a pen is in use, keep it at room temperature away from direct heat and light, and discard it after the number of days stated in the leaflet, usually 28 days, even if some insulin is left.",
     "Storage and Disposal"),
    ("does amoxicillin make birth control pills less effective", "amoxicillin", "Interaction",
     "Current evidence suggests that amoxicillin and most other antibiotics do not reduce the effectiveness of combined contraceptive pills. However, vomiting or severe diarrhoea during an illness can stop the pill being absorbed, so follow the missed-pill advice in your leaflet if this happens. Rifampicin-type antibiotics are an exception and do reduce effectiveness.",
     "What special precautions should I follow?"),
    ("what are the side effects of amlodipine", "amlodipine", "Side effects",
     "Common side effects of amlodipine include swollen ankles, flushing, headache, dizziness and tiredness. Ankle swelling is related to the dose and is not a sign of heart failure in most people. Contact your doctor if you have chest pain that is new or worse, a fast or pounding heartbeat, or fainting.",
     "What side effects can this medication cause?"),
    ("how does warfarin work", "warfarin", "Action",
     "Warfarin is an anticoagulant. It blocks the enzyme the liver uses to recycle vitamin K, which is needed to make several clotting factors. With fewer active clotting factors, the blood takes longer to clot, which lowers the risk of harmful clots forming in the veins, heart or brain. Its effect is monitored with a blood test called the INR.",
     None),
    ("what happens if i miss a dose of levothyroxine", "levothyroxine", "Usage",
     "Take the missed dose as soon as you remember. If it is almost time for your next dose, skip the missed dose and continue with your regular schedule. Do not take a double dose to make up for a missed one. Missing a single dose is unlikely to cause problems because levothyroxine stays in the body for a long time.",
     "What should I do if I forget a dose?"),
    ("what is the maximum dose of acetaminophen per day", "acetaminophen", "Dose",
     "For most healthy adults, the maximum is 4,000 mg of acetaminophen (paracetamol) in 24 hours, taken as no more than 1,000 mg at a time with at least four hours between doses. A lower limit is advised for people who drink alcohol regularly, weigh under 50 kg or have liver disease. Check other medicines, such as cold remedies, because many also contain acetaminophen.",
     "How should this medicine be used?"),
    ("can i drink alcohol while taking metronidazole", "metronidazole", "Interaction",
     "No. Drinking alcohol while taking metronidazole and for at least 48 hours after the last dose can cause flushing, a pounding headache, nausea, vomiting and a fast heartbeat. Also avoid products that contain alcohol, such as some mouthwashes and cough syrups.",
     "What special dietary instructions should I follow?"),
    ("how do i use an albuterol inhaler", "albuterol", "Usage",
     "Shake the inhaler, breathe out fully, then put the mouthpiece between your lips. Start to breathe in slowly and press the canister once, continuing to breathe in deeply. Hold your breath for about ten seconds, then breathe out slowly. Wait about a minute before a second puff. Using a spacer device makes it easier to get the medicine into your lungs.",
     "How should this medicine be used?"),
    ("why does atorvastatin cause muscle pain", "atorvastatin", "Side effects",
     "Statins such as atorvastatin can affect energy production in muscle cells, which in some people causes aching, weakness or cramps. The risk is higher with higher doses, hypothyroidism, kidney disease and some interacting medicines. Tell your doctor about unexplained muscle pain, particularly with dark urine or fever, as a rare serious muscle breakdown needs urgent assessment.",
     "What side effects can this medication cause?"),
    ("what should i do if my child swallowed some of my oxycodone tablets", "oxycodone", "Overdose",
     "Call emergency services straight away, even if the child seems well, because symptoms can be delayed. Signs of overdose include extreme sleepiness, small pupils, slow or shallow breathing and blue lips. If naloxone is available and the child is not breathing normally, give it as instructed and start rescue breathing. Keep opioid medicines locked away out of children's reach.",
     "In case of emergency/overdose"),
]

MEDICATIONQA_LONG_ANSWER = long_text(
    "Lithium can cause a range of side effects, and some are more common when treatment is first started or the dose is increased.",
    "Common side effects include a fine tremor of the hands, feeling thirsty, passing more urine than usual, mild nausea, loose stools, a metallic taste and weight gain.",
    "These often settle after the first few weeks, and taking the dose with food or at night can help.",
    "Over the longer term, lithium can reduce thyroid function, so thyroid blood tests are done before treatment and at regular intervals, and some people need thyroid hormone replacement.",
    "It can also affect the kidneys, most often by reducing their ability to concentrate urine, and less often by a gradual fall in kidney function; kidney blood tests are therefore checked regularly.",
    "Lithium can raise calcium levels by affecting the parathyroid glands.",
    "Skin problems such as acne or a worsening of psoriasis may occur.",
    "Because the gap between a helpful and a harmful level is small, your blood level is checked regularly, usually 12 hours after the last dose.",
    "Signs that the level may be too high include severe or worsening tremor, vomiting, diarrhoea, muscle twitching, unsteadiness, slurred speech, blurred vision, confusion and drowsiness; if these happen, stop taking lithium and seek medical help urgently.",
    "The level can rise if you become dehydrated, for example through hot weather, fever, vomiting or diarrhoea, or if you start certain medicines, including anti-inflammatory painkillers such as ibuprofen, some blood pressure medicines such as ACE inhibitors, and diuretics.",
    "Keep your salt and fluid intake steady and tell every doctor, dentist and pharmacist that you take lithium.",
    "Lithium may harm an unborn baby, so talk to your doctor before trying to become pregnant.",
)


def build_medicationqa() -> Mirror:
    m = Mirror("medicationqa", "truehealth/medicationqa")

    def row(q, drug, qtype, answer, section, link=True) -> dict[str, Any]:
        return dict(zip(MEDQA_COLS, (q, drug, qtype, answer, section, url(drug) if link else None)))

    for g in MEDICATIONQA_GOOD:
        m.add(row(*g))
    m.add(row("is it safe to take omeprazole every day", "omeprazole", "Usage", None, None),
          Bad("Answer", "null", "missing_answer", "the published build passed the null answer straight through (a defect not to copy)"))
    m.add(row("  how do i taper off prednisone \n", "prednisone", "Usage",
              "Do not stop prednisone suddenly if you have taken it for more than a few weeks, because your body may not make enough of its own steroid hormones. Your doctor will give you a schedule that lowers the dose gradually, often over several weeks. Report tiredness, weakness, dizziness, nausea or joint pain while tapering.",
              "How should this medicine be used?"),
          Bad("Question", "leading/trailing whitespace", "kept",
              "the current mapper keeps this source unstripped under both policies (as published), so the record's input keeps the whitespace; a strip would fix it"))
    m.add(dict(m.rows[2]), Bad("all", "exact duplicate of row 2", "card_global_dedup", "this source has no per-source dedup, so the published policy keeps both copies"))
    m.add(row(MEDICATIONQA_GOOD[9][0], "metronidazole", "Interaction",
              "Avoid alcohol during treatment with metronidazole and for two days after finishing the course, because the combination can cause a severe reaction with vomiting and palpitations.",
              "What special precautions should I follow?"),
          Bad("Question, Answer", "same question as row 9, different answer", "kept",
              "no per-source dedup, and the card's global dedup is on (input, output), which differ: both policies keep it"))
    m.add(row("what are the side effects of lithium", "lithium", "Side effects", MEDICATIONQA_LONG_ANSWER, "What side effects can this medication cause?"),
          Bad("Answer", f"over-long answer ({len(MEDICATIONQA_LONG_ANSWER)} chars)", "card_length"))
    m.add(row("can you crush amlodipine tablets", "amlodipine", "Usage", "Yes.", "How should this medicine be used?"),
          Bad("Answer", "very short answer (4 chars)", "card_length"))
    m.add(row("what is the generic name for zocor", "simvastatin", "Information", "   ", None, link=False),
          Bad("Answer", "whitespace only", "missing_answer"))
    m.add(row("", "ondansetron", "Usage",
              "Ondansetron tablets that melt in the mouth should be placed on the tongue and allowed to dissolve before swallowing; they do not need to be taken with water.",
              "How should this medicine be used?"),
          Bad("Question", "empty string", "missing_question"))
    return m


# --------------------------------------------------------------------------------------------------
# 8. QuyenAnhDE/Diseases_Symptoms (Diseases_Symptoms.csv)
# --------------------------------------------------------------------------------------------------

DISEASES_GOOD = [
    ("Panic disorder", "Palpitations, Sweating, Trembling, Shortness of breath, Fear of losing control, Dizziness",
     "Cognitive behavioural therapy, Antidepressant medications, Breathing techniques"),
    ("Influenza", "Fever, Chills, Muscle aches, Cough, Sore throat, Fatigue, Headache",
     "Rest, Fluids, Antiviral medications such as oseltamivir, Fever-reducing medicines"),
    ("Hypertension", "Often no symptoms, Headache, Blurred vision, Shortness of breath, Nosebleeds",
     "Lifestyle changes, Low-salt diet, ACE inhibitors, Calcium channel blockers, Thiazide diuretics"),
    ("Kidney stones", "Severe flank pain spreading to the groin, Blood in urine, Nausea, Vomiting, Frequent urination",
     "Pain relief, Increased fluid intake, Alpha-blockers, Shock wave lithotripsy, Ureteroscopy"),
    ("Appendicitis", "Pain starting around the navel and moving to the lower right abdomen, Loss of appetite, Nausea, Fever",
     "Appendectomy, Intravenous antibiotics"),
    ("Asthma", "Wheezing, Shortness of breath, Chest tightness, Night-time cough",
     "Inhaled bronchodilators, Inhaled corticosteroids, Trigger avoidance, Asthma action plan"),
    ("Hypothyroidism", "Fatigue, Weight gain, Cold intolerance, Dry skin, Constipation, Hair thinning",
     "Levothyroxine, Regular thyroid function monitoring"),
    ("Shingles", "Burning pain on one side of the body, Band-like blistering rash, Itching, Fever",
     "Antiviral medications, Pain relief, Calamine lotion, Vaccination for prevention"),
    ("Iron deficiency anaemia", "Tiredness, Pale skin, Shortness of breath on exertion, Brittle nails, Cold hands and feet",
     "Iron supplements, Diet rich in iron, Treating the source of blood loss"),
    ("Conjunctivitis", "Red eye, Gritty feeling, Sticky discharge, Crusted eyelids in the morning",
     "Cleaning the eyelids, Cool compresses, Antibiotic eye drops for bacterial cases, Hand hygiene"),
    ("Gastroenteritis", "Diarrhoea, Vomiting, Abdominal cramps, Low-grade fever",
     "Oral rehydration, Rest, Bland diet, Intravenous fluids if severely dehydrated"),
    ("Tonsillitis", "Sore throat, Painful swallowing, Swollen tonsils with white patches, Fever, Swollen neck glands",
     "Pain relief, Fluids, Antibiotics for bacterial infection, Tonsillectomy for recurrent cases"),
    ("Deep vein thrombosis", "Swelling of one leg, Calf pain, Warmth, Redness of the skin",
     "Anticoagulant medications, Compression stockings, Early mobilisation"),
]

DISEASES_LONG_TREATMENTS = long_text(
    "Lifestyle changes are the foundation of treatment: a balanced diet that limits refined sugar and processed carbohydrate, regular physical activity of at least 150 minutes a week, weight loss of 5 to 10 percent for people who are overweight, stopping smoking and limiting alcohol.",
    "Metformin is usually the first medicine, started at a low dose and increased gradually to reduce stomach upset.",
    "If blood sugar targets are not reached, other medicines are added depending on the person's needs, including SGLT2 inhibitors, which also protect the heart and kidneys, GLP-1 receptor agonists, which help with weight loss, DPP-4 inhibitors, sulfonylureas and pioglitazone.",
    "Insulin is needed when other treatments are not enough, during severe illness or pregnancy, or when blood sugar is very high at diagnosis.",
    "Blood pressure and cholesterol are treated to reduce the risk of heart attack and stroke, often with an ACE inhibitor or angiotensin receptor blocker and a statin.",
    "Regular monitoring includes HbA1c every three to six months, kidney function and urine albumin each year, yearly eye screening for retinopathy and annual foot checks for nerve damage and poor circulation.",
    "Structured education programmes teach people to manage their condition, recognise low blood sugar and adjust treatment during illness.",
    "Vaccination against influenza and pneumococcal infection is recommended.",
    "In people with obesity, weight-loss surgery can lead to remission, and very low calorie diets under supervision can also achieve remission in some people early in the disease.",
)


def build_diseases() -> Mirror:
    m = Mirror("diseases_symptoms", "QuyenAnhDE/Diseases_Symptoms")

    def row(code, name, symptoms, treatments) -> dict[str, Any]:
        return {"Code": code, "Name": name, "Symptoms": symptoms, "Treatments": treatments}

    for i, g in enumerate(DISEASES_GOOD, start=1):
        m.add(row(i, *g))
    n = len(DISEASES_GOOD)
    m.add(row(n + 1, "Bell's palsy", "Sudden weakness of one side of the face, Drooping mouth, Difficulty closing one eye, Drooling", None),
          Bad("Treatments", "null (empty CSV cell)", "missing_treatments"))
    m.add(row(n + 2, "", "Joint pain, Fever, Rash on the face", "Anti-inflammatory medicines, Hydroxychloroquine"),
          Bad("Name", "empty (an empty CSV cell loads as null)", "missing_name"))
    m.add(row(n + 3, "   ", "Itchy red rash in skin folds, Scaling", "Antifungal creams, Keeping skin dry"),
          Bad("Name", "whitespace only", "missing_name"))
    m.add(dict(m.rows[1]), Bad("all", "exact duplicate of row 1 (same Code)", "duplicate_input"))
    m.add(row(n + 4, "Chronic bronchitis", DISEASES_GOOD[5][1], "Stopping smoking, Bronchodilators, Pulmonary rehabilitation"),
          Bad("Symptoms", "same Symptoms as row 5, different Name", "duplicate_input", "dedup keeps the first occurrence (row 5)"))
    m.add(row(n + 5, "Unknown condition", 404, "Further investigation"),
          Bad("Symptoms", "a number in a text column (404; loads as the string '404')", "card_length", "non-empty, so the mapper keeps it; the card's length filter drops it (3 chars)"))
    m.add(row(n + 6, "Type 2 diabetes", "Increased thirst, Frequent urination, Tiredness, Blurred vision, Slow-healing sores, Frequent infections", DISEASES_LONG_TREATMENTS),
          Bad("Treatments", f"over-long treatments ({len(DISEASES_LONG_TREATMENTS)} chars; mapped output over 1,500)", "card_length"))
    m.add(row(n + 7, "Scabies", "Itch", "Permethrin cream, Washing bedding and clothes at high temperature"),
          Bad("Symptoms", "very short symptoms (4 chars)", "card_length"))
    m.add(row(n + 8, " Rheumatoid arthritis", "  Joint pain, Morning stiffness lasting over an hour, Swelling of small joints of the hands  ", "Disease-modifying drugs such as methotrexate, Physiotherapy "),
          Bad("Name, Symptoms, Treatments", "leading/trailing whitespace", "kept", "stripping fixes it"))
    return m


# --------------------------------------------------------------------------------------------------
# 9. badri55/First_aid__dataset (first_aid1.json, {"intents": [...]})
# --------------------------------------------------------------------------------------------------

FIRST_AID_GOOD = [
    ("Cuts", ["What to do if I cut myself?", "How to treat a small cut?", "I cut my finger while cooking"],
     ["Wash your hands, then rinse the cut under clean running water. Press on it with a clean cloth until it stops bleeding, then cover it with a sterile plaster or dressing."]),
    ("Abrasions", ["How do I treat a graze?", "I scraped my knee on the pavement", "What to do for an abrasion?"],
     ["Rinse the graze gently with clean water to remove dirt, pat it dry and cover it with a non-stick dressing. Watch for redness, swelling or pus, which can be signs of infection."]),
    ("Stings", ["How to treat a bee sting?", "I was stung by a wasp", "What should I do after an insect sting?"],
     ["Scrape the sting out sideways with a fingernail or card, wash the area and apply a cold pack. Call emergency services if the person has difficulty breathing or swelling of the face or throat."]),
    ("Splinter", ["How do I remove a splinter?", "There is a splinter in my hand"],
     ["Clean the area, then use clean tweezers to pull the splinter out at the same angle it went in. Wash the area again and cover it. Seek help if it is deep or will not come out."]),
    ("Sprains", ["How to treat a sprained ankle?", "I twisted my ankle", "What to do for a sprain?"],
     ["Rest the joint, apply an ice pack wrapped in a cloth for 20 minutes at a time, use a compression bandage and keep the limb raised. Seek medical advice if you cannot bear weight."]),
    ("Nosebleed", ["How do I stop a nosebleed?", "My nose is bleeding", "What to do for a nose bleed?"],
     ["Sit up and lean forward, then pinch the soft part of the nose for 10 to 15 minutes while breathing through the mouth. Seek medical help if the bleeding lasts more than 20 minutes."]),
    ("Burns", ["How do I treat a burn?", "I burned my hand on the stove", "What to do for a burn?"],
     ["Cool the burn under cool running water for 20 minutes and remove rings or tight clothing nearby. Cover it loosely with cling film or a clean dressing. Do not apply ice, butter or creams."]),
    ("Choking", ["What to do if someone is choking?", "Someone cannot breathe after eating", "How to help a choking person?"],
     ["Encourage the person to cough. If they cannot, give up to five sharp back blows between the shoulder blades, then up to five abdominal thrusts. Call emergency services if the blockage does not clear."]),
    ("Fever", ["How to bring down a fever?", "I have a high temperature", "What to do for a fever?"],
     ["Rest, drink plenty of fluids and take paracetamol or ibuprofen as directed. Seek medical help for a very high temperature, a stiff neck, a rash that does not fade or confusion."]),
    ("Heat Exhaustion", ["What to do for heat exhaustion?", "I feel faint and sweaty in the heat"],
     ["Move the person to a cool place, loosen tight clothing and give water or an oral rehydration drink. Cool their skin with water. Call for help if they do not improve within 30 minutes."]),
    ("Frostbite", ["How to treat frostbite?", "My fingers are numb and white from the cold"],
     ["Move to a warm place and rewarm the area in warm, not hot, water for 20 to 30 minutes. Do not rub the skin. Seek medical attention, and do not rewarm if it might freeze again."]),
    ("Fainting", ["What to do if someone faints?", "A person fainted in front of me"],
     ["Lay the person on their back and raise their legs to help blood flow to the brain. Loosen tight clothing. If they do not wake within a minute, call emergency services and check their breathing."]),
    ("Head Injury", ["What to do after a head injury?", "My child hit his head"],
     ["Apply a cold pack to any swelling and watch the person closely. Seek urgent help if they lose consciousness, vomit repeatedly, become confused or drowsy, or have a severe headache."]),
    ("Snake Bite", ["What to do for a snake bite?", "I was bitten by a snake"],
     ["Call emergency services. Keep the person still and calm, with the bitten limb below heart level. Remove rings and tight items. Do not cut the wound, suck out venom or apply a tourniquet."]),
]

FIRST_AID_LONG_RESPONSE = long_text(
    "First make sure the area is safe for you and the casualty.",
    "Tap the person's shoulders and shout to check if they respond.",
    "If there is no response, shout for help and open the airway by tilting the head back and lifting the chin.",
    "Look, listen and feel for normal breathing for no more than ten seconds; occasional gasps are not normal breathing.",
    "If the person is not breathing normally, call emergency services straight away, put the phone on speaker, and send someone to fetch an automated external defibrillator if one is available.",
    "Kneel beside the person, place the heel of one hand in the centre of the chest on the lower half of the breastbone, put your other hand on top and interlock your fingers.",
    "Keep your arms straight and your shoulders directly above your hands.",
    "Press down hard and fast, about 5 to 6 cm deep, at a rate of 100 to 120 compressions a minute, and let the chest come back up fully after each compression.",
    "If you are trained and willing, after 30 compressions give 2 rescue breaths: pinch the nose, seal your mouth over theirs and blow steadily for about one second until the chest rises.",
    "If you are not trained, give continuous chest compressions without breaths.",
    "As soon as the defibrillator arrives, switch it on and follow its spoken instructions, making sure nobody is touching the person when a shock is given.",
    "Continue CPR without stopping until professional help takes over, the person starts to wake up, move, open their eyes and breathe normally, or you become too exhausted to continue.",
    "If the person starts breathing normally, put them in the recovery position and keep checking their breathing until help arrives.",
)


def build_first_aid() -> Mirror:
    m = Mirror("first_aid_dataset", "badri55/First_aid__dataset")

    def intent(tag, patterns, responses) -> dict[str, Any]:
        return {"tag": tag, "patterns": patterns, "responses": responses}

    for g in FIRST_AID_GOOD:
        m.add(intent(*g))
    m.add(intent("Poisoning", [], ["Call emergency services or a poison centre immediately. Do not make the person vomit unless told to by a professional."]),
          Bad("patterns", "empty list", "no_patterns"))
    m.add(intent("Drowning", ["What to do if someone is drowning?", "How to help a person pulled from water?"], []),
          Bad("responses", "empty list", "no_responses"))
    m.add(intent("Bruises", ["How to treat a bruise?", "I have a bruise on my leg"],
                 ["", "Apply a cold compress wrapped in a cloth for 10 minutes and rest the area."]),
          Bad("responses[0]", "first response is an empty string", "empty_response"))
    m.add(intent("Pulled Muscle", ["   ", "How to treat a pulled muscle?"],
                 ["Rest the muscle, apply ice wrapped in a cloth for 20 minutes several times a day, and start gentle stretching after a few days."]),
          Bad("patterns[0]", "first pattern is whitespace only", "empty_pattern"))
    m.add(copy_intent(m.rows[0]), Bad("all", "exact duplicate of row 0", "duplicate_input"))
    m.add(intent("Burn", ["How do I treat a burn?", "My skin is burnt"], ["Put butter on the burn to soothe it."]),
          Bad("patterns[0], responses", "same first pattern as row 6, different (unsafe) response", "duplicate_input", "dedup keeps the first occurrence (row 6)"))
    m.add(intent("Strains", ["  How do I treat a strained back?\n", "I hurt my back lifting a box"],
                 [" Rest for a day or two but keep gently moving, use a warm pack and take simple painkillers. Seek help if you have numbness, weakness or problems passing urine.  "]),
          Bad("patterns[0], responses[0]", "leading/trailing whitespace", "kept", "stripping fixes it"))
    m.add(intent("CPR", ["How do I perform CPR?", "Someone collapsed and is not breathing", "How to do chest compressions?"], [FIRST_AID_LONG_RESPONSE]),
          Bad("responses[0]", f"over-long response ({len(FIRST_AID_LONG_RESPONSE)} chars)", "card_length"))
    m.add(intent("Wound", ["wound", "How to care for a wound?"],
                 ["Clean the wound with running water, apply gentle pressure to stop bleeding, cover it with a sterile dressing and check it daily for signs of infection."]),
          Bad("patterns[0]", "very short first pattern (5 chars)", "card_length"))
    return m


def copy_intent(intent: dict[str, Any]) -> dict[str, Any]:
    return {k: list(v) if isinstance(v, list) else v for k, v in intent.items()}


# --------------------------------------------------------------------------------------------------
# Writers (deterministic)
# --------------------------------------------------------------------------------------------------


def write_bytes(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def write_json(path: Path, obj: Any) -> None:
    write_bytes(path, (json.dumps(obj, ensure_ascii=False, indent=2) + "\n").encode("utf-8"))


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> None:
    write_bytes(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode("utf-8"))


def write_csv(path: Path, columns: list[str], rows: list[dict[str, Any]]) -> None:
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n", quoting=csv.QUOTE_MINIMAL)
    writer.writerow(columns)
    for r in rows:
        writer.writerow(["" if r[c] is None else r[c] for c in columns])
    write_bytes(path, buffer.getvalue().encode("utf-8"))


def write_parquet(path: Path, rows: list[dict[str, Any]], schema) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    table = pa.Table.from_pylist(rows, schema=schema)
    path.parent.mkdir(parents=True, exist_ok=True)
    pq.write_table(
        table,
        path,
        compression="snappy",
        version="2.6",
        data_page_version="1.0",
        use_dictionary=True,
        write_statistics=True,
        row_group_size=1_000_000,
        store_schema=True,
    )


def build_all() -> dict[str, Mirror]:
    return {
        m.source_id: m
        for m in (build_o1_verifiable(), build_reasoning_en(), build_medqa(), build_wiki(), build_symptom(),
                  build_disaster(), build_medicationqa(), build_diseases(), build_first_aid())
    }


def write_all(mirrors: dict[str, Mirror]) -> None:
    import pyarrow as pa

    m = mirrors["medical_o1_verifiable_problem"]
    write_json(m.folder / "medical_o1_verifiable_problem.json", m.rows)

    m = mirrors["medical_o1_reasoning_sft"]
    write_bytes(m.folder / "README.md", REASONING_README.encode("utf-8"))
    write_json(m.folder / "medical_o1_sft.json", m.rows)
    write_json(m.folder / "medical_o1_sft_Chinese.json", REASONING_ZH)
    write_json(m.folder / "medical_o1_sft_mix.json", REASONING_EN_MIX)
    write_json(m.folder / "medical_o1_sft_mix_Chinese.json", REASONING_ZH_MIX)

    m = mirrors["medqa"]
    write_jsonl(m.folder / "train.jsonl", m.rows)
    for split, rows in MEDQA_EXTRA_SPLITS.items():
        write_jsonl(m.folder / f"{split}.jsonl", rows)

    m = mirrors["wiki_medical_terms"]
    write_parquet(m.folder / "wiki_medical_terms.parquet", m.rows,
                  pa.schema([("page_title", pa.string()), ("page_text", pa.string())]))

    m = mirrors["symptom_to_diagnosis"]
    write_jsonl(m.folder / "train.jsonl", m.rows)
    write_jsonl(m.folder / "test.jsonl", SYMPTOM_TEST)

    m = mirrors["synthetic_disaster_reports"]
    write_parquet(m.folder / "data" / "train-00000-of-00001.parquet", m.rows,
                  pa.schema([("report_id", pa.string()), ("disaster_type", pa.string()), ("severity_level", pa.string()),
                             ("location", pa.string()), ("responder_notes", pa.string()),
                             ("resource_needs", pa.list_(pa.string()))]))

    m = mirrors["medicationqa"]
    write_parquet(m.folder / "data" / "train-00000-of-00001.parquet", m.rows,
                  pa.schema([(c, pa.string()) for c in MEDQA_COLS]))

    m = mirrors["diseases_symptoms"]
    write_csv(m.folder / "Diseases_Symptoms.csv", ["Code", "Name", "Symptoms", "Treatments"], m.rows)

    m = mirrors["first_aid_dataset"]
    write_json(m.folder / "first_aid1.json", {"intents": m.rows})

    write_bytes(HUB / "README.md", readme(mirrors).encode("utf-8"))


# --------------------------------------------------------------------------------------------------
# Expected fates: the rules of shared/reference/sources.md, drop-reason names as in core/mappers.py
# --------------------------------------------------------------------------------------------------


def s(value: Any) -> str:
    """A field as the mappers see it: null -> "", numbers -> their string form, stripped."""
    return "" if value is None else str(value).strip()


def norm(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower()).strip()


def first_rule(*rules: tuple[str, bool]) -> str | None:
    return next((name for name, broken in rules if broken), None)


@dataclass
class Mapped:
    input: str
    output: str | None  # None when an LLM writes it
    reason: str | None
    key: str  # the per-source dedup field's value


def map_row(source_id: str, r: dict[str, Any]) -> Mapped:
    if source_id == "medical_o1_verifiable_problem":
        q, a = s(r[OQ]), s(r[GA])
        return Mapped(q, a, first_rule(("missing_question", not q), ("missing_answer", not a)), q)
    if source_id == "medical_o1_reasoning_sft":
        q, cot, resp = s(r["Question"]), s(r["Complex_CoT"]), s(r["Response"])
        out = f"<reasoning>\n{cot}\n</reasoning>\n{resp}"
        return Mapped(q, out, first_rule(("missing_question", not q), ("missing_reasoning", not cot), ("missing_response", not resp)), q)
    if source_id == "medqa":
        q, a = s(r["question"]), s(r["answer"])
        options = {k: s(v) for k, v in r["options"].items()}
        rendered = [v for v in options.values() if v]
        return Mapped(q, None, first_rule(("missing_question", not q), ("missing_answer", not a), ("no_options", not rendered),
                                          ("answer_not_in_options", a not in rendered)), q)
    if source_id == "wiki_medical_terms":
        title, text = s(r["page_title"]), s(r["page_text"])
        return Mapped("", None, first_rule(("missing_title", not title), ("missing_text", not text)), text)
    if source_id == "symptom_to_diagnosis":
        text, label = s(r["input_text"]), s(r["output_text"])
        return Mapped(text, None, first_rule(("missing_symptoms", not text), ("missing_diagnosis", not label)), text)
    if source_id == "synthetic_disaster_reports":
        sev, kind, notes = s(r["severity_level"]), s(r["disaster_type"]), s(r["responder_notes"])
        needs = ", ".join(x for x in (s(n) for n in (r["resource_needs"] or [])) if x)
        inp = f"There is a {sev.lower()} {kind.lower()}. Situation: {notes}"
        return Mapped(inp, f"The main resources needed are: {needs}.",
                      first_rule(("missing_severity_level", not sev), ("missing_disaster_type", not kind),
                                 ("missing_responder_notes", not notes), ("missing_resource_needs", not needs)), inp)
    if source_id == "medicationqa":
        q = "" if r["Question"] is None else str(r["Question"])  # unstripped, as published
        a = "" if r["Answer"] is None else str(r["Answer"])
        return Mapped(q, a, first_rule(("missing_question", not q.strip()), ("missing_answer", not a.strip())), q)
    if source_id == "diseases_symptoms":
        name, sym, treat = s(r["Name"]), s(r["Symptoms"]), s(r["Treatments"])
        return Mapped(sym, f"It seems you may have {name}. The usual treatment is {treat}.",
                      first_rule(("missing_symptoms", not sym), ("missing_name", not name), ("missing_treatments", not treat)), sym)
    if source_id == "first_aid_dataset":
        pats, resps = r["patterns"] or [], r["responses"] or []
        p, a = (s(pats[0]) if pats else ""), (s(resps[0]) if resps else "")
        return Mapped(p, a, first_rule(("no_patterns", not pats), ("no_responses", not resps), ("empty_pattern", not p),
                                       ("empty_response", not a)), p)
    raise KeyError(source_id)


# Per-source dedup field (registry `dedup_on`); None = no per-source dedup.
DEDUP_ON = {
    "medical_o1_verifiable_problem": "input", "medical_o1_reasoning_sft": None, "medqa": "input",
    "wiki_medical_terms": "context", "symptom_to_diagnosis": "input", "synthetic_disaster_reports": "input",
    "medicationqa": None, "diseases_symptoms": "input", "first_aid_dataset": "input",
}
GENERATED_OUTPUT = {"medqa", "wiki_medical_terms", "symptom_to_diagnosis"}


def expected_fates(m: Mirror) -> list[str]:
    """Each row's fate, in pipeline order: mapper rules, per-source dedup, then (card policy only)
    the global normalised (input, output) dedup and the 10-1500 character bounds. For sources whose
    output an LLM writes, only the input can be judged (wiki inputs are LLM questions: not judged)."""
    fates: list[str] = []
    seen_key: set[str] = set()
    seen_pair: set[tuple[str, str]] = set()
    for r in m.rows:
        mapped = map_row(m.source_id, r)
        if mapped.reason:
            fates.append(mapped.reason)
            continue
        dedup = DEDUP_ON[m.source_id]
        if dedup:
            if mapped.key in seen_key:
                fates.append(f"duplicate_{dedup}")
                continue
            seen_key.add(mapped.key)
        if m.source_id not in GENERATED_OUTPUT:
            pair = (norm(mapped.input), norm(mapped.output or ""))
            if pair in seen_pair:
                fates.append("card_global_dedup")
                continue
            seen_pair.add(pair)
        texts = [mapped.input] if m.source_id in GENERATED_OUTPUT else [mapped.input, mapped.output or ""]
        if m.source_id != "wiki_medical_terms" and any(not MIN_CHARS <= len(t) <= MAX_CHARS for t in texts):
            fates.append("card_length")
            continue
        fates.append("kept")
    return fates


def counts(m: Mirror) -> dict[str, int]:
    fates = expected_fates(m)
    dedup = DEDUP_ON[m.source_id]
    mapped = sum(1 for f in fates if f in ("kept", "card_global_dedup", "card_length") or f.startswith("duplicate_"))
    after_source_dedup = sum(1 for f in fates if f in ("kept", "card_global_dedup", "card_length"))
    after_global = sum(1 for f in fates if f in ("kept", "card_length"))
    return {"rows": len(fates), "mapped": mapped, "after_source_dedup": after_source_dedup if dedup else mapped,
            "card_after_global_dedup": after_global, "card_after_length": fates.count("kept")}


def validate(mirrors: dict[str, Mirror]) -> None:
    """Fail loudly if a declared defect and the rules disagree, or a good row breaks a bound."""
    problems = []
    for m in mirrors.values():
        if not 15 <= len(m.rows) <= 40:
            problems.append(f"{m.source_id}: {len(m.rows)} rows, expected 15-40")
        for i, fate in enumerate(expected_fates(m)):
            declared = m.bad[i].fate if i in m.bad else "kept"
            if fate != declared:
                problems.append(f"{m.source_id} row {i}: rules give {fate!r}, declared {declared!r}")
    for title, text in WIKI_GOOD:
        n = sum(1 for x in re.split(r"(?<=[.!?]) ", text) if x)
        if not (400 <= len(text) <= 1500 and 3 <= n <= 8):
            problems.append(f"wiki {title}: {len(text)} chars, {n} sentences")
    for name, text, low in (("o1 long question", O1_VERIFIABLE_LONG_QUESTION, 1500), ("medqa long question", MEDQA_LONG_QUESTION, 1500),
                            ("symptom long input", SYMPTOM_LONG_INPUT, 1500), ("disaster long notes", DISASTER_LONG_NOTES, 1500),
                            ("medicationqa long answer", MEDICATIONQA_LONG_ANSWER, 1500), ("diseases long treatments", DISEASES_LONG_TREATMENTS, 1500),
                            ("first aid long response", FIRST_AID_LONG_RESPONSE, 1500), ("reasoning long CoT", REASONING_LONG_COT, 1500),
                            ("wiki long article", WIKI_LONG_ARTICLE, 3000)):
        if len(text) <= low:
            problems.append(f"{name}: {len(text)} chars, must exceed {low}")
    for extra in (REASONING_ZH, REASONING_EN_MIX, REASONING_ZH_MIX):
        if not 3 <= len(extra) <= 5:
            problems.append("reasoning side config must hold 3-5 rows")
    if problems:
        raise SystemExit("mirror data inconsistent:\n  " + "\n  ".join(problems))


# --------------------------------------------------------------------------------------------------
# hub/README.md
# --------------------------------------------------------------------------------------------------

FILES = {
    "medical_o1_verifiable_problem": "`medical_o1_verifiable_problem.json`",
    "medical_o1_reasoning_sft": "`README.md` (configs), `medical_o1_sft.json` (en, {en}), `medical_o1_sft_Chinese.json` (zh, {zh}), "
                                "`medical_o1_sft_mix.json` (en_mix, {en_mix}), `medical_o1_sft_mix_Chinese.json` (zh_mix, {zh_mix})",
    "medqa": "`train.jsonl`, `validation.jsonl` ({validation}), `test.jsonl` ({test})",
    "wiki_medical_terms": "`wiki_medical_terms.parquet`",
    "symptom_to_diagnosis": "`train.jsonl`, `test.jsonl` ({test})",
    "synthetic_disaster_reports": "`data/train-00000-of-00001.parquet`",
    "medicationqa": "`data/train-00000-of-00001.parquet`",
    "diseases_symptoms": "`Diseases_Symptoms.csv`",
    "first_aid_dataset": "`first_aid1.json` (`{{\"intents\": [...]}}`, load with `field=\"intents\"`)",
}

README_HEAD = """# Sample-profile Hub mirrors

Local stand-ins for the 9 Hub source datasets, one folder per repo (`<owner>/<name>/`), with the
real repos' file names, formats and column names. Every row is original text written for this project.
Generated by `python -m medset_dagster.sample_data.build_mirrors` (deterministic; do not edit by hand).
The pipeline reads only the `train` split (`name="en"` for the reasoning set; `data_files="first_aid1.json",
field="intents"` for first aid).

## Reading the tables

Fates, in pipeline order (names of the mapper drop reasons as in `core/mappers.py`):

- `missing_*`, `no_*`, `empty_*`, `answer_not_in_options`: dropped by the source's mapper (both policies).
- `duplicate_input` / `duplicate_context`: dropped by the per-source exact dedup (registry `dedup_on`,
  keep first; both policies).
- `card_global_dedup`: kept by the per-source rules, dropped by the `card` policy's dedup on normalised
  (lower-cased, whitespace-collapsed) `(input, output)`.
- `card_length`: dropped by the `card` policy's 10-1500 character bounds on input or output.
- `kept`: survives (stripping fixes it, or no rule catches it; see the note).

For medqa, wiki and symptom rows an LLM writes the output: their counts are items sent to the LLM, and
`card_length` there judges the input only (wiki inputs are LLM questions, so no wiki row is judged).
Every other row of a mirror is a good row whose fate is `kept`. The script checks each declared fate
against its own re-implementation of these rules and refuses to write inconsistent data.
"""

README_LOADER = """
## Loader notes (datasets 5.2.0, pyarrow 26, pandas 3)

- No mirror carries a wrong-type value in a JSON or JSON-lines file. `datasets` accepts a number among
  strings (e.g. an integer `Ground-True Answer`, `Response`, `answer` or `output_text`), but the whole
  column then loads as a `Json` feature and polars sees every value as JSON text (`"a"` with its quotes),
  which would spoil every row of that source, not just one. The same happens to medqa `options` when
  rows have different keys, so every medqa row has keys A to E and a 4-option question has `"E": null`.
- `first_aid1.json` (with `field="intents"`) is refused outright (`DatasetGenerationError`) when a list
  mixes a number with strings (e.g. `patterns: [999, "call"]`) or `tag` mixes types.
- CSV: the number in `Symptoms` (row {csv_number_row}) loads as the string `"404"`; empty cells, quoted or not,
  load as null, so an "empty" `Name` arrives as null, while a whitespace-only `Name` stays `"   "`.
- Parquet columns are typed, so those mirrors have no wrong-type rows.
- The reasoning repo has four configs and no default: `load_dataset(<folder>, split="train")` without
  `name` raises "Config name is missing"; `name="zh"` etc. load the Chinese and mixed files.
- medqa: the real repo (revision e8fc563) names its validation file `dev.jsonl`; this mirror uses
  `validation.jsonl` as specified for the project. `datasets` maps both names to the `validation` split,
  and the pipeline reads only `train`.
"""


def readme(mirrors: dict[str, Mirror]) -> str:
    extra = {"en": len(mirrors["medical_o1_reasoning_sft"].rows), "zh": len(REASONING_ZH), "en_mix": len(REASONING_EN_MIX),
             "zh_mix": len(REASONING_ZH_MIX), "validation": len(MEDQA_EXTRA_SPLITS["validation"]),
             "test": len(MEDQA_EXTRA_SPLITS["test"])}
    lines = [README_HEAD, "## Counts per mirror (train split)", "",
             "| source | folder | files | train rows | after mapper | after per-source dedup | card: after global dedup | card: after length bounds |",
             "|---|---|---|---|---|---|---|---|"]
    for sid, m in mirrors.items():
        c = counts(m)
        fmt = dict(extra)
        if sid == "symptom_to_diagnosis":
            fmt["test"] = len(SYMPTOM_TEST)
        files = FILES[sid].format(**fmt)
        lines.append(f"| `{sid}` | `{m.repo}` | {files} | {c['rows']} | {c['mapped']} | {c['after_source_dedup']} | "
                     f"{c['card_after_global_dedup']} | {c['card_after_length']} |")
    lines += ["", "The published policy's count is the \"after per-source dedup\" column (LLM sources: items sent to the LLM).",
              "Sources without per-source dedup (reasoning, medicationqa) repeat the mapper count there.", ""]
    lines += ["## Deliberate bad rows", "", "Row index is 0-based in the train file.", ""]
    for sid, m in mirrors.items():
        lines += [f"### `{sid}` ({len(m.rows)} rows; bad rows {len(m.bad)})", "",
                  "| row | column(s) | what is wrong | fate | note |", "|---|---|---|---|---|"]
        for i in sorted(m.bad):
            b = m.bad[i]
            lines.append(f"| {i} | {b.columns} | {b.defect} | `{b.fate}` | {b.note} |")
        lines.append("")
    csv_number_row = next(i for i, r in enumerate(mirrors["diseases_symptoms"].rows) if isinstance(r["Symptoms"], int))
    lines.append(README_LOADER.format(csv_number_row=csv_number_row))
    return "\n".join(lines)


# --------------------------------------------------------------------------------------------------
# Load check
# --------------------------------------------------------------------------------------------------

LOAD_CALLS: list[tuple[str, str, dict[str, Any]]] = [
    ("medical_o1_verifiable_problem", "FreedomIntelligence/medical-o1-verifiable-problem", {}),
    ("medical_o1_reasoning_sft", "FreedomIntelligence/medical-o1-reasoning-SFT", {"name": "en"}),
    ("medical_o1_reasoning_sft[zh]", "FreedomIntelligence/medical-o1-reasoning-SFT", {"name": "zh"}),
    ("medical_o1_reasoning_sft[en_mix]", "FreedomIntelligence/medical-o1-reasoning-SFT", {"name": "en_mix"}),
    ("medical_o1_reasoning_sft[zh_mix]", "FreedomIntelligence/medical-o1-reasoning-SFT", {"name": "zh_mix"}),
    ("medqa", "truehealth/medqa", {}),
    ("medqa[validation]", "truehealth/medqa", {"split": "validation"}),
    ("medqa[test]", "truehealth/medqa", {"split": "test"}),
    ("wiki_medical_terms", "gamino/wiki_medical_terms", {}),
    ("symptom_to_diagnosis", "gretelai/symptom_to_diagnosis", {}),
    ("symptom_to_diagnosis[test]", "gretelai/symptom_to_diagnosis", {"split": "test"}),
    ("synthetic_disaster_reports", "paulelliotco/synthetic-disaster-reports", {}),
    ("medicationqa", "truehealth/medicationqa", {}),
    ("diseases_symptoms", "QuyenAnhDE/Diseases_Symptoms", {}),
    ("first_aid_dataset", "badri55/First_aid__dataset", {"data_files": "first_aid1.json", "field": "intents"}),
]


def check_loads() -> bool:
    os.environ["HF_DATASETS_OFFLINE"] = "1"
    os.environ["HF_HUB_OFFLINE"] = "1"
    import datasets

    datasets.disable_progress_bars()
    datasets.logging.set_verbosity_error()
    ok = True
    with tempfile.TemporaryDirectory() as cache:
        for label, repo, kwargs in LOAD_CALLS:
            kwargs = {"split": "train", **kwargs}
            try:
                ds = datasets.load_dataset(str(HUB / repo), cache_dir=cache, **kwargs)
                json_columns = [k for k, v in ds.features.items() if type(v).__name__ == "Json"]
                flag = f"  JSON-TYPED COLUMNS {json_columns}" if json_columns else ""
                ok &= not json_columns
                print(f"ok   {label}: {ds.num_rows} rows, columns {ds.column_names}{flag}")
            except Exception as error:  # report every failure, then fail
                ok = False
                print(f"FAIL {label}: {type(error).__name__}: {error}")
    return ok


def main(argv: list[str]) -> int:
    mirrors = build_all()
    validate(mirrors)  # exits non-zero, writing nothing, when a declared fate and the rules disagree
    write_all(mirrors)
    for m in mirrors.values():
        print(f"wrote {m.repo}: {len(m.rows)} train rows, {len(m.bad)} deliberate bad rows")
    if "--no-check" in argv:
        return 0
    return 0 if check_loads() else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
