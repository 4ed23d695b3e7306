"""The classic lab's three test scripts, kept with their command lines as thin entry points to the experiments."""
