"""Diagnose the machine, the AWS account and the repository before they cost a deploy.

May import: anything but `cli`.
"""
