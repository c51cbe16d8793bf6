"""Small shared pieces with no heavy imports: the one atomic writer and the one table renderer."""
