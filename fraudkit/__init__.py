"""fraudkit: LLM-assisted, real-time credit-card fraud detection, as a workbook and a system.

Importing the package has no side effects: no folders, servers, Spark sessions or logging.
"""

__version__ = "0.1.0"
