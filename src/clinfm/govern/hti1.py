"""The 31 source attributes ONC's HTI-1 rule requires for a predictive decision support intervention.

Source: 45 CFR 170.315(b)(11)(iv)(B)(1)-(9), adopted by the HTI-1 final rule ("Health Data, Technology, and
Interoperability: Certification Program Updates, Algorithm Transparency, and Information Sharing", 89 FR 1192,
January 9, 2024). Wording follows the regulation text; each attribute names who must supply it when the platform
cannot know it. The (A)(5)-(13) variables referred to in (B)(4) are race, ethnicity, language, sexual
orientation, gender identity, sex, date of birth, social determinants of health, and health status assessments.
Intervention risk management practices are a separate requirement, (b)(11)(vi), not one of these attributes.
"""

from __future__ import annotations

from dataclasses import dataclass

DEVELOPER = "developer"
CLINICAL_OWNER = "clinical owner"
DEPLOYER = "deploying organization"

GROUPS = {
    1: "Details and output of the intervention",
    2: "Purpose of the intervention",
    3: "Cautioned out-of-scope use of the intervention",
    4: "Intervention development details and input features",
    5: "Process used to ensure fairness in development of the intervention",
    6: "External validation process",
    7: "Quantitative measures of performance",
    8: "Ongoing maintenance of intervention implementation and use",
    9: "Update and continued validation or fairness assessment schedule",
}

DEMOGRAPHIC_VARIABLES = (
    "race",
    "ethnicity",
    "language",
    "sexual_orientation",
    "gender_identity",
    "sex",
    "date_of_birth",
    "social_determinants_of_health",
    "health_status_assessments",
)
"""The variables of 170.315(b)(11)(iv)(A)(5)-(13)."""


@dataclass(frozen=True)
class SourceAttribute:
    """One attribute: ``key`` (how facts and cards name it), its paragraph, group, wording, and who supplies it."""

    key: str
    group: int
    item: str
    text: str
    owner: str

    @property
    def cfr(self) -> str:
        return f"45 CFR 170.315(b)(11)(iv)(B)({self.group})({self.item})"

    @property
    def group_title(self) -> str:
        return GROUPS[self.group]


_A = SourceAttribute
ATTRIBUTES: tuple[SourceAttribute, ...] = (
    _A("developer", 1, "i", "Name and contact information for the intervention developer", DEVELOPER),
    _A("funding_source", 1, "ii", "Funding source of the technical implementation for the intervention(s) "
       "development", DEVELOPER),
    _A("output_value", 1, "iii", "Description of value that the intervention produces as an output", DEVELOPER),
    _A("output_type", 1, "iv", "Whether the intervention output is a prediction, classification, recommendation, "
       "evaluation, analysis, or other type of output", DEVELOPER),
    _A("intended_use", 2, "i", "Intended use of the intervention", CLINICAL_OWNER),
    _A("intended_population", 2, "ii", "Intended patient population(s) for the intervention's use", CLINICAL_OWNER),
    _A("intended_users", 2, "iii", "Intended user(s)", CLINICAL_OWNER),
    _A("decision_role", 2, "iv", "Intended decision-making role for which the intervention was designed to be used/for "
       "(e.g., informs, augments, replaces clinical management)", CLINICAL_OWNER),
    _A("cautioned_use", 3, "i", "Description of tasks, situations, or populations where a user is cautioned against "
       "applying the intervention", CLINICAL_OWNER),
    _A("known_risks", 3, "ii", "Known risks, inappropriate settings, inappropriate uses, or known limitations",
       DEVELOPER),
    _A("inclusion_exclusion", 4, "i", "Exclusion and inclusion criteria that influenced the training data set",
       DEVELOPER),
    _A("demographic_inputs", 4, "ii", "Use of variables in paragraph (b)(11)(iv)(A)(5)-(13) as input features",
       DEVELOPER),
    _A("demographic_representativeness", 4, "iii", "Description of demographic representativeness according to "
       "variables in paragraph (b)(11)(iv)(A)(5)-(13) including, at a minimum, those used as input features in the "
       "intervention", DEVELOPER),
    _A("training_relevance", 4, "iv", "Description of relevance of training data to intended deployed setting",
       DEPLOYER),
    _A("fairness_approach", 5, "i", "Description of the approach the intervention developer has taken to ensure "
       "that the intervention's output is fair", DEVELOPER),
    _A("bias_mitigation", 5, "ii", "Description of approaches to manage, reduce, or eliminate bias", DEVELOPER),
    _A("external_data_source", 6, "i", "Description of the data source, clinical setting, or environment where an "
       "intervention's validity and fairness has been assessed, other than the source of training and testing "
       "data", DEVELOPER),
    _A("external_tester", 6, "ii", "Party that conducted the external testing", DEVELOPER),
    _A("external_representativeness", 6, "iii", "Description of demographic representativeness of external data "
       "according to variables in paragraph (b)(11)(iv)(A)(5)-(13) including, at a minimum, those used as input "
       "features in the intervention", DEVELOPER),
    _A("external_process", 6, "iv", "Description of external validation process", DEVELOPER),
    _A("internal_validity", 7, "i", "Validity of intervention in test data derived from the same source as the "
       "initial training data", DEVELOPER),
    _A("internal_fairness", 7, "ii", "Fairness of intervention in test data derived from the same source as the "
       "initial training data", DEVELOPER),
    _A("external_validity", 7, "iii", "Validity of intervention in data external to or from a different source than "
       "the initial training data", DEVELOPER),
    _A("external_fairness", 7, "iv", "Fairness of intervention in data external to or from a different source than "
       "the initial training data", DEVELOPER),
    _A("outcome_evaluations", 7, "v", "References to evaluation of use of the intervention on outcomes, including "
       "bibliographic citations or hyperlinks to evaluations of how well the intervention reduced morbidity, "
       "mortality, length of stay, or other outcomes", CLINICAL_OWNER),
    _A("validity_monitoring", 8, "i", "Description of process and frequency by which the intervention's validity is "
       "monitored over time", DEPLOYER),
    _A("local_validity", 8, "ii", "Validity of intervention in local data", DEPLOYER),
    _A("fairness_monitoring", 8, "iii", "Description of the process and frequency by which the intervention's "
       "fairness is monitored over time", DEPLOYER),
    _A("local_fairness", 8, "iv", "Fairness of intervention in local data", DEPLOYER),
    _A("update_schedule", 9, "i", "Description of process and frequency by which the intervention is updated",
       DEVELOPER),
    _A("correction_schedule", 9, "ii", "Description of frequency by which the intervention's performance is "
       "corrected when risks related to validity and fairness are identified", DEVELOPER),
)  # fmt: skip
BY_KEY = {a.key: a for a in ATTRIBUTES}
assert len(ATTRIBUTES) == 31 and len(BY_KEY) == 31
