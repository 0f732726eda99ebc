"""``medprune search``: the most compressed candidate that passes the clinical gate on items
the search never saw, with a statistical guarantee. ``space`` (candidates and chains),
``split`` (search / certification items), ``state`` (the search's typed state, saved as
``state.json``), ``plan`` (bisection and successive halving, pure), ``candidate`` (one
candidate at one rung, cached), ``workspace`` (the search's folder), ``certify``
(fixed-sequence testing), ``report`` (Pareto plot) and ``stage`` (the pipeline tasks' glue)."""
