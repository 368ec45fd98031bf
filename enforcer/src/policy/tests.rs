//! Policy language tests: fields, errors, precedence, includes, compiler output.
