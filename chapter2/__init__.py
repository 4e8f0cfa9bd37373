"""Chapter 2: Inside the Model. Lesson functions, one module per step of the forward."""
