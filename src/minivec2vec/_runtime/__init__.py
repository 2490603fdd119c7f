"""The process around the stages: threads, the memory plan, input validation, stage sizes."""
