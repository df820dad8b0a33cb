"""``sfumato batch``: a whole folder tree cloaked by a pool of Ray actors, resumable, exactly once.

The driver walks the source tree (plan), hands each file's bytes to an actor that runs the same
pipeline as ``sfumato cloak`` (actors), writes each result under the same relative name with a
temp name and a rename, and only then appends its row to the manifest (manifest). Ray is imported
only here and in ``runner``/``cluster``, so the rest of sfumato works without the extra.
"""
