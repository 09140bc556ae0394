"""
A test case base for definitions the XML reader must refuse.
"""

from __future__ import annotations

import unittest

from qemud.domain.xml import parse_domain_xml
from qemud.errors import DomainConfigError


class RefusalTestCase(unittest.TestCase):
    """Adds L{assertRefused}."""

    def assertRefused(self, text: str, message: str,
                      cls: type[DomainConfigError] = DomainConfigError) -> None:
        """
        Parsing C{text} raises exactly C{cls} with full message C{message}.
        """
        with self.assertRaises(DomainConfigError) as cm:
            parse_domain_xml(text)
        self.assertIs(type(cm.exception), cls)
        self.assertEqual(cm.exception.message, message)
