//! The request pipeline: every HTTP API request, and every request
//! forwarded over server RPC, takes the same steps.

pub mod forward;
