"""The frequentist reproduction of Mitchell et al. (2024), from any agency-level dataset.

:mod:`~cst_bayes.frequentist.tables` computes the five tables (scipy and statsmodels calls);
:mod:`~cst_bayes.frequentist.published` compares them with the printed numbers and writes
them (through the disclosure policy for restricted data).
"""

from cst_bayes.frequentist.published import (
    ANOVA_TEXT_P,
    FIG1_NOT_SIGNIFICANT,
    FIG1_TEXT_PCT,
    _read_published,
    _stars,
    compare,
    printed_matches,
    summarise_comparison,
    summary_text,
    suppress,
    write_tables,
)
from cst_bayes.frequentist.tables import (
    ANOVA_COLUMNS,
    COMPARISON_COLUMNS,
    FIG1_COLUMNS,
    LINKS,
    STRATUM_TERMS,
    TABLE1_COLUMNS,
    TABLE1_STRATA,
    TABLE2_COLUMNS,
    TABLE3_COLUMNS,
    Z95,
    Link,
    anova,
    fig1,
    reproduce,
    table1,
    table2,
    table2_pairs,
    table3,
)

__all__ = [
    "ANOVA_COLUMNS",
    "ANOVA_TEXT_P",
    "COMPARISON_COLUMNS",
    "FIG1_COLUMNS",
    "FIG1_NOT_SIGNIFICANT",
    "FIG1_TEXT_PCT",
    "LINKS",
    "STRATUM_TERMS",
    "TABLE1_COLUMNS",
    "TABLE1_STRATA",
    "TABLE2_COLUMNS",
    "TABLE3_COLUMNS",
    "Z95",
    "Link",
    "_read_published",
    "_stars",
    "anova",
    "compare",
    "fig1",
    "printed_matches",
    "reproduce",
    "summarise_comparison",
    "summary_text",
    "suppress",
    "table1",
    "table2",
    "table2_pairs",
    "table3",
    "write_tables",
]
