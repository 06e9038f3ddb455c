"""Attacks from issue 13, each reproduced and now refused or contained."""
