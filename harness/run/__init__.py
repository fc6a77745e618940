"""How facts are planned and measured: the plan, the engine, the call memo and where model code runs."""
