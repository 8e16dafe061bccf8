"""ClinFM's own Presidio recognizers for clinical notes, one family a file; `clinical_recognizers()` builds them."""

from __future__ import annotations

from clinfm.deid.recognizers.account import AccountNumberRecognizer
from clinfm.deid.recognizers.address import AddressRecognizer
from clinfm.deid.recognizers.age import AgeOver89Recognizer
from clinfm.deid.recognizers.biometric import BiometricIdRecognizer
from clinfm.deid.recognizers.date import ClinicalDateRecognizer
from clinfm.deid.recognizers.device import DeviceIdRecognizer
from clinfm.deid.recognizers.group_pattern import GroupPattern, GroupPatternRecognizer
from clinfm.deid.recognizers.health_plan import HealthPlanIdRecognizer
from clinfm.deid.recognizers.identifier import OtherIdRecognizer
from clinfm.deid.recognizers.labelled_field import LabelledFieldRecognizer
from clinfm.deid.recognizers.license import LicenseNumberRecognizer
from clinfm.deid.recognizers.mrn import MRNRecognizer
from clinfm.deid.recognizers.name import ClinicalNameRecognizer
from clinfm.deid.recognizers.phone import PhoneFaxRecognizer
from clinfm.deid.recognizers.ssn import SSNRecognizer
from clinfm.deid.recognizers.url import WebAddressRecognizer
from clinfm.deid.recognizers.vehicle import VehicleIdRecognizer

RECOGNIZER_CLASSES: tuple[type[GroupPatternRecognizer], ...] = (
    MRNRecognizer,
    AccountNumberRecognizer,
    HealthPlanIdRecognizer,
    DeviceIdRecognizer,
    LicenseNumberRecognizer,
    VehicleIdRecognizer,
    AgeOver89Recognizer,
    AddressRecognizer,
    ClinicalNameRecognizer,
    ClinicalDateRecognizer,
    PhoneFaxRecognizer,
    SSNRecognizer,
    OtherIdRecognizer,
    BiometricIdRecognizer,
    WebAddressRecognizer,
    LabelledFieldRecognizer,
)


def clinical_recognizers() -> list[GroupPatternRecognizer]:
    """A fresh, loaded instance of every ClinFM recognizer."""
    return [cls() for cls in RECOGNIZER_CLASSES]


__all__ = ["GroupPattern", "GroupPatternRecognizer", "RECOGNIZER_CLASSES", "clinical_recognizers"] + [
    cls.__name__ for cls in RECOGNIZER_CLASSES
]
