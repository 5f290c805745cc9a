"""Clinical variables: parsing (stage, TNM, grade, receptor status), typed encoding, real tables."""

from metastat.clinical.encoder import ClinicalEncoder, Variable
from metastat.clinical.parse import parse_column

__all__ = ["ClinicalEncoder", "Variable", "parse_column"]
