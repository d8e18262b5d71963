//! omero-sessiond library.
