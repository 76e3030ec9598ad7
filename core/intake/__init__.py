"""Photos coming in: image search, the downloader, web collections, and photos the user already has.

Pages call this concern through `core.intake.api`.
"""
