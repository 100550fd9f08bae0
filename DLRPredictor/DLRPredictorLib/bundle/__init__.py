"""Model bundles: the manifest, verification and writing.

- manifest: manifest.json's constants, schema and rules; VerifiedBundle, the typed view of a verified bundle.
- verify: load_bundle, the complete check of a bundle folder (names, types, content, sizes, sha256).
- write: write_bundle, written into a hidden folder, verified, then renamed into place.
- software: the versions a bundle was built with, compared with the running ones.
- limits: bounds on what a bundle file may make a reader do (alias and zip bombs, lying array headers).
- trust: the content digest, the pinned digests of the shipped bundles, the trust levels.
- signature: signature.json, an Ed25519 signature over the content digest (imports cryptography).
- sign: sign_bundle, the signing step of `dlrpredictor train --sign-key` and `dlrpredictor sign`.
"""
