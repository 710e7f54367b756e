STRATEGIES = {"ripu_region": None}
