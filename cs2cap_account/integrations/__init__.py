"""Running the SDK inside other frameworks and libraries.

Each module imports its framework only when used, and nothing here is imported by
`import cs2cap_account`.
"""
