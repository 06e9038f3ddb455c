"""cel-python raises the recursion limit to 2500 when an Environment is built; do it
up front so hypothesis does not warn that the limit changed during a test."""
import sys

if sys.getrecursionlimit() < 2500:
    sys.setrecursionlimit(2500)
