"""Helpers users test their own code with: deciders given/when/then, a fake clock."""

from facta.testing.clock import FakeClock
from facta.testing.deciders import Scenario, given

__all__ = ["FakeClock", "Scenario", "given"]
