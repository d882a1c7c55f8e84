"""serving/launchers/docker"""
