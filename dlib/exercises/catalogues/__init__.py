"""Each notebook's exercise catalogues: the levelled hints and the catalogued mistakes, one module per notebook.

They live here, not in the notebook, so the cell that checks an exercise never shows the formula the
exercise asks for. A catalogue is a dict named after its exercise and passed to the checker whole::

    from dlib.exercises.catalogues import nb01
    q_sample = check_function("Exercise 1: q_sample", my_q_sample, dlib.forward.q_sample, cases=cases, **nb01.q_sample)

with keys ``hint`` (levels, a nudge first and the formula last), ``mistakes`` (learner-facing name ->
a wrong implementation with the reference's signature) and, where the reference is not a dlib
function as it stands, ``reference``. This package sits above everything the catalogues imitate
(docs/ARCHITECTURE.md); ``dlib.exercises`` itself, the checkers, stays a leaf.
"""
