"""How Careline's records read and write as FHIR R4 resources, one module per resource type.

Handlers receive resources already validated by `fhir.resources` (R4B models, wire-compatible
with R4 for these types) and turn them into Careline rows, or rows into plain JSON dicts.
`handler` holds what they all build on; `fhir.registry` lists them.
"""
