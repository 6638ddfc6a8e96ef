"""HTTP routers; app.main includes every one of them (a router left out answers 404)."""
